"""Seconds per training step of candidate networks on this machine: what a recipe lever costs before it is trained.

Each network takes the step ``training`` takes: two random 4-channel patches (96^3 by default), the forward pass,
the training's default loss on WT/TC/ET (``training.losses.region_loss``), the backward pass and an AdamW update. A
network with deep supervision (MONAI ``DynUNet``, ``SegResNetDS``) is trained on every head, as nnU-Net does,
through MONAI's ``DeepSupervisionLoss``. Per network it prints the parameters, the median seconds of the timed
steps (after one untimed step), what 3,750 steps (the recipe's schedule) would take, and the median seconds of an
inference pass on two patches of the same size (eval mode, no gradient, fp32, torch: what the torch backend of
``predict`` pays per two windows).

Networks:

* ``shipped``: the bundled model's own architecture (MONAI ``UNet``, see the model card);
* ``dynunet-ds``: MONAI ``DynUNet``, filters 16-32-64-128 (full resolution first, then strides 2-2-2), with two
  deep-supervision heads: nnU-Net's network at the shipped model's widths;
* ``segresnet-ds``: MONAI ``SegResNetDS``, 8 filters, blocks 1-2-2-4, three supervised scales (the MONAI BraTS
  bundle's ``SegResNet``, 16 filters and blocks 1-2-2-4, at half its width, with deep supervision).

Usage::

    python benchmarks/train_step.py [--networks shipped dynunet-ds segresnet-ds] [--patch 96] [--steps 4]
        [--threads 2] [--precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import statistics
import time

RECIPE_STEPS = 3750
NETWORKS = ("shipped", "dynunet-ds", "segresnet-ds")


def build(name: str):
    """The untrained network called ``name``, one of :data:`NETWORKS` (see the module doc)."""
    from monai.networks.nets import DynUNet, SegResNetDS

    from napari_brainseg.model import build_network, load_model

    if name == "shipped":
        return build_network(load_model("bundled")[1])
    if name == "dynunet-ds":
        return DynUNet(3, 4, 3, kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2], upsample_kernel_size=[2, 2, 2],
                       filters=[16, 32, 64, 128], norm_name="instance", deep_supervision=True, deep_supr_num=2)
    return SegResNetDS(3, init_filters=8, in_channels=4, out_channels=3, blocks_down=(1, 2, 2, 4), dsdepth=3)


def heads(output) -> list:
    """Every supervised output of a training forward pass, full resolution first."""
    import torch

    if isinstance(output, (list, tuple)):
        return list(output)
    if output.ndim == 6:  # DynUNet stacks its deep-supervision heads in dimension 1
        return list(torch.unbind(output, dim=1))
    return [output]


def step_seconds(network, patch: int, steps: int, bf16: bool) -> list[float]:
    """Seconds of each of ``steps`` timed training steps (after one untimed)."""
    import torch
    from monai.losses import DeepSupervisionLoss

    from napari_brainseg.training.losses import region_loss

    loss_fn = DeepSupervisionLoss(region_loss())
    optimizer = torch.optim.AdamW(network.parameters(), lr=2e-3)
    image = torch.randn(2, 4, patch, patch, patch)
    target = (torch.rand(2, 3, patch, patch, patch) > 0.9).float()
    network.train()
    seconds = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = heads(network(image))
        loss = loss_fn([o.float() for o in outputs], target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    return seconds[1:]


def forward_seconds(network, patch: int, steps: int) -> list[float]:
    """Seconds of each of ``steps`` timed inference passes on two patches (after one untimed)."""
    import torch

    image = torch.randn(2, 4, patch, patch, patch)
    network.eval()
    seconds = []
    with torch.inference_mode():
        for _ in range(steps + 1):
            start = time.perf_counter()
            network(image)
            seconds.append(time.perf_counter() - start)
    return seconds[1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--patch", type=int, default=96, help="edge of the two cubic patches of a step")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps and inference passes per network")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"two {args.patch}^3 patches a step, {args.threads} threads, {args.precision}")
    print("| network | parameters | s / step (median) | 3,750 steps (h) | s / inference pass, fp32 (median) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in args.networks:
        network = build(name)
        median = statistics.median(step_seconds(network, args.patch, args.steps, args.precision == "bf16"))
        inference = statistics.median(forward_seconds(network, args.patch, args.steps))
        parameters = sum(p.numel() for p in network.parameters())
        print(f"| {name} | {parameters:,} | {median:.2f} | {median * RECIPE_STEPS / 3600:.1f} | {inference:.2f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
