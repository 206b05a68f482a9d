rule export:
    input:
        samples="results/{model}/samples.npz",
        weights="results/{model}/weights.pt",
    output:
        onnx="results/{model}/fp32.onnx",
        record="results/{model}/export.json",
        test_data=directory("results/{model}/test_data_set_0"),
    log:
        "logs/export/{model}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
    params:
        settings=model_settings("opset"),
    script:
        "../scripts/export.py"
