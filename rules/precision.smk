# fp16 and int8 variants of each model's fp32 graph; each writes the variant and a record.


rule fp16:
    input:
        onnx="results/{model}/fp32.onnx",
        samples="results/{model}/samples.npz",
    output:
        onnx="results/{model}/fp16.onnx",
        record="results/{model}/fp16.json",
    log:
        "logs/fp16/{model}.log",
    conda:
        ENV
    resources:
        mem_mb=memory_mb(2000, 5),
        runtime=15,
    params:
        tolerance=fp16_tolerance,
        settings=model_settings("fp16"),
    script:
        "../scripts/fp16.py"


# One rule for every static int8 recipe: `int8` and each int8_<name> under int8_recipes.
rule int8:
    input:
        onnx="results/{model}/fp32.onnx",
        samples="results/{model}/samples.npz",
    output:
        onnx="results/{model}/{int8_variant}.onnx",
        record="results/{model}/{int8_variant}.json",
    log:
        "logs/int8/{model}_{int8_variant}.log",
    conda:
        ENV
    # Entropy and percentile calibration peak near 3 GB on mobilenet_v2 (minmax: 1 GB).
    resources:
        mem_mb=memory_mb(4000, 6),
        runtime=30,
    params:
        recipe=int8_recipe,
    script:
        "../scripts/int8.py"


# Whether dynamic int8 fits is read from the fp32 graph. A checkpoint: a model it skips gets
# a `skipped` summary row in place of its int8dyn jobs.
checkpoint int8dyn_plan:
    input:
        onnx="results/{model}/fp32.onnx",
    output:
        plan="results/{model}/int8dyn_plan.json",
    log:
        "logs/int8dyn_plan/{model}.log",
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        settings=model_settings("int8dyn"),
    script:
        "../scripts/int8dyn_plan.py"


rule int8dyn:
    input:
        onnx="results/{model}/fp32.onnx",
    output:
        onnx="results/{model}/int8dyn.onnx",
        record="results/{model}/int8dyn.json",
    log:
        "logs/int8dyn/{model}.log",
    conda:
        ENV
    resources:
        mem_mb=memory_mb(2000, 6),
        runtime=15,
    params:
        settings=model_settings("int8dyn"),
    script:
        "../scripts/int8dyn.py"


rule int8dyn_skipped:
    input:
        plan="results/{model}/int8dyn_plan.json",
    output:
        csv="results/{model}/skipped/int8dyn_{provider}_b{batch}.csv",
    log:
        "logs/int8dyn_skipped/{model}_{provider}_b{batch}.log",
    conda:
        ENV
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/int8dyn_skipped.py"
