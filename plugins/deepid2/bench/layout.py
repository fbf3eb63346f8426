"""Workload ``layout``: a training step of the loss study's net with the input channels-last
(``DeepIDNet.layout``, what every run does on a CPU) against the same net kept in NCHW until
its locally connected conv3 (what it did before).

Both sides start from the same weights and take the same SGD steps on the same random batch of
128 images, softmax loss on 512 identities; only the memory layout of stages 1-2 differs. The row
also gives the largest difference of the two sides' losses after one step from the same state,
which should be float rounding, not a different computation.
"""
from __future__ import annotations

import copy

import torch

from facebench.bench.report import Row, Target, skipped
from facebench.bench.runner import BenchContext
from facebench.bench.timing import measure, watch_load
from facebench.components import BuildContext
from facebench.registry import get_registry

BATCH = 128
IDENTITIES = 512
CASE = "study net (BatchNorm, linear feature), batch 128, softmax"


def run(ctx: BenchContext) -> list[Row]:
    from facebench_plugins.deepid_net import DeepIDNet, DeepIDNetConfig

    class NCHWNet(DeepIDNet):
        def layout(self, x: torch.Tensor) -> torch.Tensor:
            return x

    if ctx.device.type != "cpu":
        return [skipped("layout", CASE, "a CPU question: the net keeps a GPU's layout")]
    torch.manual_seed(ctx.seed)
    cfg = DeepIDNetConfig(batchnorm=True, feature_relu=False)
    ours_net = DeepIDNet(cfg)
    base_net = NCHWNet(cfg)
    base_net.load_state_dict(ours_net.state_dict())
    loss = get_registry().build("loss", get_registry().get("loss", "softmax").schema(),
                                BuildContext(num_classes=IDENTITIES, feature_dim=ours_net.feature_dim))
    x = torch.rand(BATCH, *ours_net.input_shape)
    y = torch.randint(0, IDENTITIES, (BATCH,))
    steps = ctx.pick(10, 2)

    def stepper(net: torch.nn.Module) -> tuple:
        head = copy.deepcopy(loss)
        opt = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=0.01, momentum=0.9)

        def step() -> float:
            out = head(net(x), y).total
            opt.zero_grad(set_to_none=True)
            out.backward()
            opt.step()
            return out.detach().item()

        return step, lambda: [step() for _ in range(steps)]

    (ours_one, ours), (base_one, base) = stepper(ours_net.train()), stepper(base_net.train())
    first = abs(ours_one() - base_one())
    with watch_load() as load:
        t = measure({"ours": ours, "nchw": base}, repeats=ctx.pick(5, 2), warmup=1, sync=ctx.sync)
    images = steps * BATCH
    ours_rate, base_rate = t["ours"].rate(images, "img/s"), t["nchw"].rate(images, "img/s")
    return [Row("layout", CASE, ours_rate, base_rate,
                "the same net in NCHW until conv3", ours_rate.median / base_rate.median,
                "channels-last / NCHW images per second", Target(">=", 1.0), load,
                details={"steps_per_call": steps, "first_step_loss_difference": first,
                         "threads": torch.get_num_threads()})]
