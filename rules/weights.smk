rule weights:
    input:
        samples="results/{model}/samples.npz",
        code=python_source_file,
    output:
        weights="results/{model}/weights.pt",
        record="results/{model}/weights.json",
    log:
        "logs/weights/{model}.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=memory_mb(2000, 2),
        runtime=30,
    params:
        settings=model_settings("kind", "target", "weights", "train", "seed"),
    script:
        "../scripts/weights.py"


rule reference:
    input:
        samples="results/{model}/samples.npz",
        weights="results/{model}/weights.pt",
    output:
        reference="results/{model}/reference.npz",
        accuracy="results/{model}/accuracy/torch.json",
    log:
        "logs/reference/{model}.log",
    wildcard_constraints:
        model=model_pattern(TENSOR_MODELS),
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=memory_mb(2000, 2),
        runtime=15,
    script:
        "../scripts/reference.py"
