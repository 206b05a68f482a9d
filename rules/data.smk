rule data:
    output:
        samples="results/{model}/samples.npz",
    log:
        "logs/data/{model}.log",
    wildcard_constraints:
        model=model_pattern(TORCH_MODELS),
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=model_settings(
            "dataset",
            "input_shape",
            "calibration_samples",
            "evaluation_samples",
            "seed",
            "dtype",
            "task",
        ),
    script:
        "../scripts/data.py"


# A zoo model's samples are its tests' inputs, one array per graph input.
rule zoo_samples:
    input:
        unpack(zoo_inputs),
    output:
        samples="results/{model}/samples.npz",
    log:
        "logs/zoo_samples/{model}.log",
    wildcard_constraints:
        model=model_pattern(ZOO_MODELS),
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=model_settings(
            "dataset",
            "input_shape",
            "calibration_samples",
            "evaluation_samples",
            "seed",
            "trusted_npz",
        ),
    script:
        "../scripts/zoo_samples.py"
