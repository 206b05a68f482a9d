rule evaluate:
    input:
        onnx="results/{model}/{onnx_variant}.onnx",
        samples="results/{model}/samples.npz",
        reference="results/{model}/reference.npz",
    output:
        parity="results/{model}/parity/{onnx_variant}.json",
        accuracy="results/{model}/accuracy/{onnx_variant}.json",
    log:
        "logs/evaluate/{model}_{onnx_variant}.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
    params:
        tolerance=parity_tolerance,
    script:
        "../scripts/evaluate.py"
