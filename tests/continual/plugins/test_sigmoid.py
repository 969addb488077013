"""The per-class sigmoid criterion with old classes' targets from the previous student."""

import pytest
import torch
from torch import nn

from cfer.continual.factory import CferConfig, make_strategy
from cfer.continual.growing import build_model
from cfer.continual.plugins.sigmoid import SigmoidCriterionPlugin, sigmoid_targets
from cfer.continual.runner import run_stream


def test_targets_are_one_hot_with_the_previous_students_sigmoids_on_old_columns():
    y = torch.tensor([0, 3, 4])
    old = torch.tensor([[2.0, -1.0, 0.0], [0.5, 0.5, -3.0], [-2.0, 1.0, 4.0]])
    t = sigmoid_targets(y, 5, old)
    assert torch.allclose(t[:, :3], torch.sigmoid(old))
    assert t[:, 3:].tolist() == [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    assert sigmoid_targets(y, 5).tolist() == nn.functional.one_hot(y, 5).float().tolist()
    with pytest.raises(ValueError, match="more than the student's"):
        sigmoid_targets(torch.tensor([0, 1, 1]), 2, old)


class _Probe(SigmoidCriterionPlugin):
    """Records each training mini-batch's input, output and the criterion's value."""

    def __init__(self):
        super().__init__()
        self.records = []

    def before_backward(self, strategy, **kwargs):
        self.records.append((strategy.clock.train_exp_counter, strategy.mb_x.detach(), strategy.mb_output.detach(),
                             strategy.mb_y.detach(), strategy.loss.detach().clone()))


def test_the_strategys_loss_is_binary_cross_entropy_against_the_previous_student(tiny_stream):
    model = build_model(arch="cfer_tiny", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    plugin = _Probe()
    strategy = make_strategy("naive", model=model, optimizer=opt, train_epochs=1, train_mb_size=16, plugins=[plugin])
    seen, end_of_last = [], None
    for k, exp in enumerate(tiny_stream.train_stream):
        previous = plugin.previous
        n = len(plugin.records)
        strategy.train(exp)
        for _, x, out, y, loss in plugin.records[n:]:
            old = None
            if k > 0:  # a frozen copy of the model as it was at the end of the previous experience
                assert {n: v for n, v in previous.state_dict().items()}.keys() == end_of_last.keys()
                assert all(torch.equal(v, end_of_last[name]) for name, v in previous.state_dict().items())
                with torch.no_grad():
                    old = previous(x)
                assert old.shape[1] < out.shape[1]
            want = nn.functional.binary_cross_entropy_with_logits(out, sigmoid_targets(y, out.shape[1], old))
            assert loss.item() == pytest.approx(want.item(), rel=1e-5)
            seen.append(k)
        end_of_last = {n: v.clone() for n, v in model.state_dict().items()}
    assert set(seen) == {0, 1, 2}
    assert all(not p.requires_grad for p in plugin.previous.parameters()) and not plugin.previous.training
    # Evaluation keeps cross-entropy.
    strategy.eval(tiny_stream.test_stream[:1])
    x, y, *_ = next(iter(torch.utils.data.DataLoader(tiny_stream.test_stream[0].dataset, batch_size=8)))
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert strategy._criterion(out, y).item() == pytest.approx(nn.functional.cross_entropy(out, y).item(), rel=1e-5)


def test_cfer_with_the_sigmoid_criterion_runs_and_composes(tiny_stream):
    model = build_model(arch="cfer_tiny", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    strategy = make_strategy("cfer", model=model, optimizer=opt, train_epochs=1, train_mb_size=16, memory_size=40,
                             total_classes=len(tiny_stream.class_names), cfer=CferConfig(criterion="sigmoid"))
    names = [type(p).__name__ for p in strategy.plugins]
    assert names.index("SigmoidCriterionPlugin") > names.index("BasicDistillationPlugin")
    result = run_stream(strategy, tiny_stream)
    assert len(result.seen_accuracy) == tiny_stream.n_steps
    with pytest.raises(ValueError, match="criterion must be 'ce' or 'sigmoid'"):
        CferConfig(criterion="bce")
