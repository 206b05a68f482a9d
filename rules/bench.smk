# A timed job claims every core the run was given, so no other job disturbs its figures.
rule bench:
    input:
        unpack(bench_inputs),
    output:
        csv="results/{model}/bench/{variant}_{provider}_b{batch}.csv",
    log:
        "logs/bench/{model}_{variant}_{provider}_b{batch}.log",
    conda:
        ENV
    threads: workflow.cores
    resources:
        mem_mb=memory_mb(3000, 3),
        runtime=30,
        gpu=gpu_count,
    params:
        warmup=bench_setting("warmup"),
        runs=bench_setting("runs"),
        sequence_lengths=sequence_lengths,
    script:
        "../scripts/bench.py"
