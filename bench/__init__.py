"""The parts of benchmark.py: settings (sizes, precisions, sections), flops (model FLOP counts), steps (the
benchmarked models and training steps), timing (timed calls, peak memory, the matmul reference), published (the
official step and feeder, for --published), model_rows and feeder_rows (the timed rows), report (summary lines,
table, JSON)."""
