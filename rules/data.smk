rule data:
    output:
        samples="results/{model}/samples.npz",
    params:
        settings=model_settings(
            "dataset", "input_shape", "calibration_samples", "evaluation_samples", "seed"
        ),
    log:
        "logs/data/{model}.log",
    resources:
        mem_mb=1000,
    conda:
        ENV
    script:
        "../scripts/data.py"
