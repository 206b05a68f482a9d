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
    wildcard_constraints:
        model=model_pattern(TENSOR_MODELS),
    conda:
        ENV
    resources:
        mem_mb=memory_mb(2000, 2),
        runtime=15,
    params:
        tolerance=parity_tolerance,
        true_fp16_samples=true_fp16_samples,
    script:
        "../scripts/evaluate.py"


# Zoo models have no PyTorch reference: each variant is checked against the zoo's outputs.
rule validate_zoo:
    input:
        unpack(zoo_inputs),
        onnx="results/{model}/{onnx_variant}.onnx",
    output:
        parity="results/{model}/parity/{onnx_variant}.json",
        accuracy="results/{model}/accuracy/{onnx_variant}.json",
    log:
        "logs/validate_zoo/{model}_{onnx_variant}.log",
    wildcard_constraints:
        model=model_pattern(ZOO_MODELS),
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        tolerance=parity_tolerance,
        trusted=model_settings("trusted_npz"),
    script:
        "../scripts/validate_zoo.py"


# Detectors: boxes matched by IoU against PyTorch, a verdict per image size.
rule detection_parity:
    input:
        onnx="results/{model}/{onnx_variant}.onnx",
        weights="results/{model}/weights.pt",
    output:
        parity="results/{model}/parity/{onnx_variant}.json",
        accuracy="results/{model}/accuracy/{onnx_variant}.json",
    log:
        "logs/detection_parity/{model}_{onnx_variant}.log",
    wildcard_constraints:
        model=model_pattern(DETECTION_MODELS),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        settings=model_settings("sizes", "input_shape"),
    script:
        "../scripts/detection_parity.py"
