"""cfer.distributed outside a torchrun job, the --nproc launcher's argument handling, and the
per-process batch rule. The multi-process behaviour is in tests/app/test_ddp.py."""

import pytest
import torch

from cfer import distributed as dist
from cfer.app import launch
from cfer.app.launch import local_threads, without_nproc
from cfer.continual.plugins.ddp import per_process_batch


def test_outside_torchrun_everything_is_the_identity():
    assert (dist.rank(), dist.world_size(), dist.is_main(), dist.is_distributed()) == (0, 1, True, False)
    x = torch.arange(5.0)
    assert torch.equal(dist.shard(x), x)
    assert torch.equal(dist.all_reduce_sum(x), x)
    assert dist.broadcast_object({"a": 1}) == {"a": 1}
    assert dist.all_gather_objects(3) == [3]
    assert torch.equal(dist.gather_shards(x, total=5), x)
    model = torch.nn.Linear(2, 2)
    assert dist.wrap_ddp(model) is model


def test_shards_partition_every_global_batch():
    items = list(range(11))
    parts = [dist.shard(items, of=3, at=r) for r in range(3)]
    assert sorted(sum(parts, [])) == items
    assert parts[1] == [1, 4, 7, 10]


def test_resolve_device_and_precision_refuse_with_the_fix():
    assert dist.resolve_device("cpu") == torch.device("cpu")
    assert dist.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="cuda:N"):
        dist.resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="use --device cpu"):
            dist.resolve_device("cuda")
    with pytest.raises(ValueError, match="needs a CUDA device; on the CPU use 'bf16'"):
        dist.check_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        dist.check_precision("fp8")


def test_bf16_autocast_runs_matmuls_in_bf16_on_the_cpu():
    a = torch.ones(4, 4)
    with dist.autocast("cpu", "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with dist.autocast("cpu", "fp32"):
        assert (a @ a).dtype == torch.float32


def test_nproc_is_stripped_from_what_the_processes_run():
    assert without_nproc(["run", "--nproc", "2", "--epochs", "1"]) == ["run", "--epochs", "1"]
    assert without_nproc(["teacher", "--nproc=4", "--out", "t.pt"]) == ["teacher", "--out", "t.pt"]


def test_threads_are_capped_by_the_cores_per_local_process(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert local_threads(6) == 6  # one process: unchanged
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert local_threads(6) == 2 and local_threads(1) == 1


def test_the_global_batch_must_divide_over_the_processes():
    assert per_process_batch(32, world=2) == 16
    with pytest.raises(ValueError, match="does not divide over 3 processes; choose a multiple of 3"):
        per_process_batch(32, world=3)


def test_wrap_ddp_takes_small_buckets_on_the_cpu_without_deprecated_options(tmp_path):
    """In a (one-process) job: 1 MiB gradient buckets on the CPU unless told otherwise, and
    no FutureWarning from torch about the buffer-broadcast option's old name."""
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            ddp = dist.wrap_ddp(torch.nn.Linear(2, 2))
        assert isinstance(ddp, DistributedDataParallel)
        assert ddp.bucket_bytes_cap == int(dist.CPU_BUCKET_MB * 2**20) == 2**20
        assert dist.wrap_ddp(torch.nn.Linear(2, 2), bucket_cap_mb=8).bucket_bytes_cap == 8 * 2**20
        with pytest.raises(ValueError, match="bucket_cap_mb must be > 0"):
            dist.wrap_ddp(torch.nn.Linear(2, 2), bucket_cap_mb=0)
    finally:
        torch.distributed.destroy_process_group()
    assert not dist.is_distributed()


@pytest.mark.parametrize("rank", ["0", "1"])
def test_under_torchrun_rank_0_says_an_error_and_the_others_give_it_time(monkeypatch, capsys, rank):
    """torchrun stops every process as soon as one fails: a rank other than 0 that met the
    same error must not exit before rank 0 has printed it."""
    slept = []
    monkeypatch.setattr(launch.time, "sleep", slept.append)
    for key, value in {"RANK": rank, "WORLD_SIZE": "2", "LOCAL_RANK": rank}.items():
        monkeypatch.setenv(key, value)
    launch.say("cfer run: error: bad input")
    said = capsys.readouterr().err
    assert (said, slept) == (("cfer run: error: bad input\n", []) if rank == "0" else ("", [launch.SAY_GRACE_S]))

