"""run_stream, experience_accuracies and make_strategy's evaluator on Avalanche's own
benchmark builders (issue 15 #15): class_incremental_benchmark names its metrics without a
/Task000/ segment, nc_benchmark with one; both must be read."""

import io

import pytest
import torch
from torch.utils.data import TensorDataset

from cfer.continual.factory import make_strategy
from cfer.continual.growing import build_model
from cfer.continual.metrics import experience_accuracies, make_evaluator
from cfer.continual.runner import run_stream

N_CLASSES, PER_CLASS, SIZE = 4, 6, 16


def _tensors(seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(N_CLASSES).repeat_interleave(PER_CLASS)
    x = torch.rand(len(y), 3, SIZE, SIZE, generator=g) + 0.3 * y[:, None, None, None]  # learnable a little
    return x, y


def _benchmark(builder, make_tensor_dataset):
    if builder == "class_incremental_benchmark":
        from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark
        from avalanche.benchmarks.utils import as_classification_dataset

        def ds(seed):
            x, y = _tensors(seed)
            d = TensorDataset(x, y)
            d.targets = y.tolist()
            return as_classification_dataset(d)

        return class_incremental_benchmark({"train": ds(0), "test": ds(1), "valid": ds(2)},
                                           class_order=[0, 1, 2, 3], num_experiences=2)
    from avalanche.benchmarks import nc_benchmark

    return nc_benchmark(make_tensor_dataset(*_tensors(0)), make_tensor_dataset(*_tensors(1)), n_experiences=2,
                        task_labels=False, fixed_class_order=[0, 1, 2, 3])


def _strategy(name, *, evaluator=None):
    model = build_model(arch="cfer_tiny", num_classes=2, img_size=SIZE, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    return make_strategy(name, model=model, optimizer=opt, train_mb_size=8, memory_size=8,
                         total_classes=N_CLASSES, evaluator=evaluator)


@pytest.mark.parametrize("builder", ["class_incremental_benchmark", "nc_benchmark"])
@pytest.mark.parametrize("name", ["naive", "cfer"])
def test_run_stream_reads_avalanche_benchmarks(builder, name, make_tensor_dataset):
    bench = _benchmark(builder, make_tensor_dataset)
    strategy = _strategy(name)
    results = run_stream(strategy, bench)
    assert [len(row) for row in results.matrix] == [1, 2]
    assert all(0.0 <= a <= 1.0 for row in results.matrix for a in row)
    assert results.n_test == [2 * PER_CLASS, 2 * PER_CLASS]
    metrics = strategy.evaluator.get_last_metrics()
    names = [k for k in metrics if k.startswith("Top1_Acc_Exp/")]
    has_task = builder == "nc_benchmark"
    assert names and all(("/Task000/" in k) == has_task for k in names), names
    accs = experience_accuracies(metrics, n_experiences=2)
    assert len(accs) == 2 and accs == results.matrix[-1]


def test_validation_stream_and_training_metrics_of_a_new_style_benchmark(make_tensor_dataset):
    from avalanche.logging import TextLogger

    bench = _benchmark("class_incremental_benchmark", make_tensor_dataset)
    evaluator = make_evaluator(loggers=[TextLogger(io.StringIO())])  # loss, stream accuracy, cfer terms too
    strategy = _strategy("cfer", evaluator=evaluator)
    results = run_stream(strategy, bench, evaluate_on="val")
    assert [len(row) for row in results.matrix] == [1, 2]
    metrics = strategy.evaluator.get_last_metrics()
    assert "Top1_Acc_Stream/eval_phase/valid_stream" in metrics
    accs = experience_accuracies(metrics, n_experiences=2, stream="valid_stream")
    assert all(0.0 <= a <= 1.0 for a in accs)
    with pytest.raises(KeyError, match=r"no test_stream accuracy for experiences \[0, 1\]"):
        experience_accuracies(metrics, n_experiences=2)  # only the validation stream was evaluated


def test_icarl_on_a_stream_it_cannot_read_names_the_fix(make_tensor_dataset):
    """Avalanche's iCaRL needs experience.benchmark.n_classes_per_exp: say so before training."""
    bench = _benchmark("class_incremental_benchmark", make_tensor_dataset)
    strategy = _strategy("icarl")
    with pytest.raises(ValueError, match="build the stream with nc_benchmark"):
        strategy.train(bench.train_stream[0])
    results = run_stream(_strategy("icarl"), _benchmark("nc_benchmark", make_tensor_dataset))
    assert [len(row) for row in results.matrix] == [1, 2]
