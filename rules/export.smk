# PyTorch models are exported; Model Zoo models are taken as they are (import_onnx).
rule export:
    input:
        samples="results/{model}/samples.npz",
        weights="results/{model}/weights.pt",
        code=python_source_file,
    output:
        onnx="results/{model}/fp32.onnx",
        record="results/{model}/export.json",
        test_data=directory("results/{model}/test_data_set_0"),
    log:
        "logs/export/{model}.log",
    wildcard_constraints:
        model=model_pattern(TENSOR_MODELS),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=memory_mb(2000, 4),
        runtime=20,
    params:
        settings=model_settings("opset", "exporter", "external_data_threshold"),
    script:
        "../scripts/export.py"


# A detector takes one image [3, H, W] with dynamic height and width, and no batch axis.
rule export_detector:
    input:
        weights="results/{model}/weights.pt",
    output:
        onnx="results/{model}/fp32.onnx",
        record="results/{model}/export.json",
        test_data=directory("results/{model}/test_data_set_0"),
    log:
        "logs/export_detector/{model}.log",
    wildcard_constraints:
        model=model_pattern(DETECTION_MODELS),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    params:
        settings=model_settings(
            "opset", "exporter", "external_data_threshold", "input_shape"
        ),
    script:
        "../scripts/export_detector.py"


rule import_onnx:
    input:
        unpack(zoo_inputs),
    output:
        onnx="results/{model}/fp32.onnx",
        record="results/{model}/export.json",
    log:
        "logs/import_onnx/{model}.log",
    wildcard_constraints:
        model=model_pattern(ZOO_MODELS),
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/import_onnx.py"
