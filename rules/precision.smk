rule fp16:
    input:
        onnx="results/{model}/fp32.onnx",
    output:
        onnx="results/{model}/fp16.onnx",
        record="results/{model}/fp16.json",
    log:
        "logs/fp16/{model}.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
    script:
        "../scripts/fp16.py"


rule int8:
    input:
        onnx="results/{model}/fp32.onnx",
        samples="results/{model}/samples.npz",
    output:
        onnx="results/{model}/int8.onnx",
        record="results/{model}/int8.json",
    log:
        "logs/int8/{model}.log",
    conda:
        ENV
    resources:
        mem_mb=3000,
    params:
        recipe=int8_recipe,
    script:
        "../scripts/int8.py"
