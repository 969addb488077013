"""benchmarks/clip_streams.py's merge: seeds joined, the figures before the unlabelled-clip step."""


def _run(seed: int, fused: float, pair: float, dropped: float, *, before: tuple[float, float, float] | None = None):
    acc = {"basic": 0.5, "compound": 0.5, "val_all": 0.5}
    run = {"seed": seed,
           "variants": {"fused": {**acc, "all": fused, "epochs": 10, "clips_per_s": 1.0},
                        "frames+motion": {**acc, "all": pair, "epochs": 10, "clips_per_s": 1.0}},
           "fused_alone": {s: {"compound": 0.3, "all": 0.3} for s in ("frames", "motion", "audio")},
           "fused_dropped": {s: {"all": dropped} for s in ("frames", "motion", "audio")}}
    if before:
        f, p, d = before
        run["before_pool"] = {"variants": {"fused": {**run["variants"]["fused"], "all": f},
                                           "frames+motion": {**run["variants"]["frames+motion"], "all": p}},
                              "fused_alone": run["fused_alone"],
                              "fused_dropped": {s: {"all": d} for s in ("frames", "motion", "audio")}}
    return run


def test_runs_of_one_seed_are_joined_and_before_pool_swaps_in_the_earlier_figures(load_benchmark):
    cs = load_benchmark("clip_streams")
    runs = [_run(0, 0.9, 0.6, 0.7, before=(0.8, 0.65, 0.6)), _run(1, 0.8, 0.7, 0.65)]
    merged = cs.merge_runs(runs)
    assert [r["seed"] for r in merged] == [0, 1] and merged[0]["variants"]["fused"]["all"] == 0.9
    before = cs.merge_runs(runs, before_pool=True)
    assert before[0]["variants"]["fused"]["all"] == 0.8 and before[0]["fused_dropped"]["audio"]["all"] == 0.6
    assert before[1]["variants"]["fused"]["all"] == 0.8  # a run without the step stays as it is
    # the stream table says, seed by seed, the fused model without audio minus the model trained without it
    audio = next(line for line in cs.tables(merged).splitlines() if line.startswith("| audio |"))
    assert audio.endswith("| +0.100, -0.050 |")
    audio = next(line for line in cs.tables(before).splitlines() if line.startswith("| audio |"))
    assert audio.endswith("| -0.050, -0.050 |")
