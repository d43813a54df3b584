"""PyTorch eager as fmnist's peer, the strongest honest one: the same network built from the case's
``TrainConfig`` and starting from fmnist's initial weights, the same optimizer rule and settings, loss (label
smoothing included), dropout, augmentation, data and loop work (shuffle, gather and scale, loss and correct count
kept on the device), timed the same way. Its settings: fused optimizer or not, channels-last convolutions or not,
subnormals flushed, TF32 off on GPUs, ``torch.set_num_threads`` at the thread budget.

PyTorch is imported inside these functions only, in the measuring process: fmnist's own code never imports it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from fmnist.benchmark.case import CLASSES, FEATURES, BenchCase
from fmnist.benchmark.data import BenchData
from fmnist.benchmark.measure import time_epochs
from fmnist.training.assemble import schedule

# Subnormals flushed to zero (``torch.set_flush_denormal(True)``, x86 with SSE3): measured on the 2-core build
# machine with the real images, it was no slower (README "Performance"); on data that drifts into subnormal floats
# it is several times faster. fmnist's compiled loops flush them too.
FLUSH_DENORMAL = True


@dataclass(frozen=True)
class PeerSettings:
    """How a PyTorch peer runs: ``fused`` optimizer, ``channels_last`` convolutions (CNNs only)."""

    fused: bool = False
    channels_last: bool = False


# The peers of each kind of network, by the name the table and the record use.
PEERS: dict[str, PeerSettings] = {
    "torch": PeerSettings(),
    "torch-fused": PeerSettings(fused=True),
    "torch-fused-cl": PeerSettings(fused=True, channels_last=True),
}


class PeerUnavailableError(RuntimeError):
    """This peer cannot run the case (e.g. no fused version of its optimizer); the message says why."""


def peer_names(case: BenchCase) -> list[str]:
    """The PyTorch peers measured for ``case``: channels-last only for CNNs."""
    return [name for name, s in PEERS.items() if not s.channels_last or case.config.model == "cnn"]


def torch_network(torch: Any, case: BenchCase, channels_last: bool = False) -> Any:
    """``case``'s network as a ``torch.nn.Sequential`` taking flat rows of 784 pixels, layer for layer as
    ``fmnist.network.conv_net`` and ``MLP`` build it from the same ``TrainConfig``: per conv block
    ``convs_per_block`` x (Conv2d "same", BatchNorm2d, activation) with the block's last activation after its 2x2
    max pool, no bias in front of batch norm; Dropout(``conv_dropout``); then the dense head (a CNN's with
    BatchNorm1d and no bias in front of it), each layer followed by the activation and Dropout(``dropout``)."""
    nn, c = torch.nn, case.config
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}[c.activation]
    layers: list[Any] = []
    features, cnn = FEATURES, c.model == "cnn"
    norm = cnn and c.batch_norm
    if cnn:
        side, channels = math.isqrt(FEATURES), 1
        layers.append(_images(torch, (1, side, side), channels_last))
        counts = c.convs_per_block * len(c.conv_channels) if len(c.convs_per_block) == 1 else c.convs_per_block
        for out, count in zip(c.conv_channels, counts, strict=True):
            for i in range(count):
                pad = c.kernel_size // 2
                layers.append(nn.Conv2d(channels, out, c.kernel_size, padding=pad, bias=not c.batch_norm))
                layers += [nn.BatchNorm2d(out)] if c.batch_norm else []
                layers += [act()] if i < count - 1 else []
                channels = out
            layers += [nn.MaxPool2d(2), act()]
            side //= 2
        layers += [nn.Dropout(c.conv_dropout)] if c.conv_dropout else []
        layers.append(nn.Flatten())
        features = channels * side * side
    for width in c.hidden:
        layers.append(nn.Linear(features, width, bias=not norm))
        layers += [nn.BatchNorm1d(width)] if norm else []
        layers.append(act())
        layers += [nn.Dropout(c.dropout)] if c.dropout else []
        features = width
    layers.append(nn.Linear(features, CLASSES))
    return nn.Sequential(*layers)


def _images(torch: Any, shape: tuple[int, int, int], channels_last: bool) -> Any:
    """Flat rows to (n, C, H, W) images: ``nn.Unflatten``, or with ``channels_last`` a module that also lays them
    out channels-last (the convolutions' weights then follow)."""
    if not channels_last:
        return torch.nn.Unflatten(1, shape)

    class ChannelsLastImages(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return x.view(x.shape[0], *shape).contiguous(memory_format=torch.channels_last)

    return ChannelsLastImages()


def copy_weights(torch: Any, network: Any, model: Any) -> None:
    """Copy the parameters of the fmnist ``model`` into the PyTorch ``network`` (the same layers in the same order;
    linear weights are stored transposed in fmnist), so that both sides start from the same weights."""
    ours = [layer for layer in model.layers if layer.params]
    theirs = [m for m in network.modules() if list(m.parameters(recurse=False))]
    if [len(layer.params) for layer in ours] != [len(list(m.parameters(recurse=False))) for m in theirs]:
        raise ValueError(f"fmnist's network and PyTorch's differ: {model.describe()} vs {network}")
    with torch.no_grad():
        for layer, module in zip(ours, theirs, strict=True):
            for mine, param in zip(layer.params.values(), module.parameters(recurse=False), strict=True):
                value = torch.from_numpy(model.backend.to_numpy(mine.data).copy())
                if isinstance(module, torch.nn.Linear) and value.ndim == 2:
                    value = value.T  # fmnist keeps linear weights as (in, out)
                param.copy_(value)


def torch_optimizer(torch: Any, case: BenchCase, params: Any, fused: bool) -> Any:
    """The optimizer of ``case.config`` in PyTorch: Adam (L2 weight decay) or AdamW (decoupled), SGD with or without
    (Nesterov) momentum, RMSprop, NAdam; the same lr, betas, eps, momentum and weight decay.

    Raises:
        PeerUnavailableError: ``fused`` asked for a rule PyTorch has no fused version of.
    """
    c, optim = case.config, torch.optim
    decay, decoupled = c.weight_decay, c.decoupled_weight_decay
    adam = {"betas": (c.beta1, c.beta2), "eps": c.epsilon, "weight_decay": decay}
    rules: dict[str, tuple[Any, dict[str, Any]]] = {
        "adam": (optim.AdamW if decoupled else optim.Adam, adam),
        "nadam": (optim.NAdam, {**adam, "decoupled_weight_decay": decoupled}),
        "sgd": (optim.SGD, {"weight_decay": decay}),
        "momentum": (optim.SGD, {"momentum": c.momentum, "weight_decay": decay}),
        "nag": (optim.SGD, {"momentum": c.momentum, "nesterov": True, "weight_decay": decay}),
        "rmsprop": (optim.RMSprop, {"alpha": c.beta, "eps": c.epsilon, "weight_decay": decay}),
    }
    rule, kwargs = rules[c.optimizer]
    try:
        return rule(params, lr=c.learning_rate, **kwargs, **({"fused": True} if fused else {}))
    except (TypeError, RuntimeError, ValueError) as err:
        raise PeerUnavailableError(f"torch.optim.{rule.__name__}(fused=True): {err}") from None


def torch_augment(torch: Any, x: Any, u: Any, max_shift: int, flip: bool, fill: float, side: int = 28) -> Any:
    """fmnist's ``Ops.shift_flip`` as one PyTorch batch op: each (n, side·side) image mirrored left-right where
    u₀ < ½ (with ``flip``), then shifted by ⌊u₁,₂·(2k+1)⌋ - k pixels with ``fill`` coming in, from the (n, 3)
    uniforms ``u``: a pad and one gather."""
    n, k = x.shape[0], int(max_shift)
    width = side + 2 * k
    padded = torch.nn.functional.pad(x.view(n, side, side), (k, k, k, k), value=fill) if k else x
    offsets = (u[:, 1:] * (2 * k + 1)).long().clamp_(max=2 * k)
    base = torch.arange(side, device=x.device)
    rows, cols = offsets[:, 0:1] + base, offsets[:, 1:2] + base
    if flip:
        cols = torch.where(u[:, 0:1] < 0.5, width - 1 - cols, cols)
    index = (rows[:, :, None] * width + cols[:, None, :]).view(n, -1)
    return padded.reshape(n, -1).gather(1, index)


def configure(torch: Any, device: str, threads: int) -> dict[str, Any]:
    """Set PyTorch up as the peer runs (threads, subnormals, TF32 off and cuDNN's autotuner on GPUs) and return
    the settings as recorded."""
    torch.set_num_threads(threads)
    flushed = bool(torch.set_flush_denormal(FLUSH_DENORMAL)) and FLUSH_DENORMAL
    settings: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "flush_denormal": flushed,
    }
    if device == "gpu":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.benchmark = True
        settings |= {
            "tf32": bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_benchmark": True,
            "cudnn": torch.backends.cudnn.version(),
            "gpu": torch.cuda.get_device_name(0),
        }
    else:
        settings |= {"mkldnn": bool(torch.backends.mkldnn.is_available()), "mkl": torch.backends.mkl.is_available()}
    return settings


def torch_throughput(case: BenchCase, data: BenchData, device: str = "cpu", peer: str = "torch", epochs: int = 2,
                     warmup: int = 1, threads: int = 1) -> dict[str, Any]:  # fmt: skip
    """The peer ``peer`` (a name of ``PEERS``) training ``case`` on ``data``: ``samples_per_second`` (the median
    timed epoch), ``epoch_seconds``, ``step_ms`` and its ``settings``.

    Raises:
        PeerUnavailableError: this peer cannot run the case.
    """
    import torch

    from fmnist.backend import get_backend

    peer_settings = PEERS[peer]
    settings = configure(torch, device, threads)
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    c = case.config
    network = torch_network(torch, case, peer_settings.channels_last)
    copy_weights(torch, network, case.build(get_backend("cpu")))
    network = network.to(dev)
    if peer_settings.channels_last:
        network = network.to(memory_format=torch.channels_last)
    network.train()
    optimizer = torch_optimizer(torch, case, network.parameters(), peer_settings.fused)
    settings |= {**asdict(peer_settings), "optimizer": type(optimizer).__name__, "augment": _augment_text(case)}
    step = _step(torch, case, network, optimizer, data, dev)
    steps = math.ceil(data.samples / c.batch_size)
    x_all, y_all = torch.from_numpy(data.images).to(dev), torch.from_numpy(data.labels).to(dev)
    generator = torch.Generator(device="cpu").manual_seed(c.seed)

    def run_epoch() -> None:
        order = torch.randperm(data.samples, generator=generator).to(dev)  # drawn on the host, as fmnist's
        for start in range(0, data.samples, c.batch_size):
            rows = order[start : start + c.batch_size]
            step(x_all.index_select(0, rows), y_all.index_select(0, rows))

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    times = time_epochs(run_epoch, sync, epochs, warmup)
    seconds = statistics.median(times)
    return {
        "samples_per_second": data.samples / seconds,
        "epoch_seconds": times,
        "step_ms": 1000.0 * seconds / steps,
        "settings": settings,
    }


def _augment_text(case: BenchCase) -> str | None:
    c = case.config
    if not (c.augment_shift or c.augment_flip):
        return None
    return f"shift ±{c.augment_shift}{' + flip' if c.augment_flip else ''} (torch_augment: a pad and one gather)"


def _step(torch: Any, case: BenchCase, network: Any, optimizer: Any, data: BenchData, dev: Any) -> Any:
    """One training step on uint8 rows and their labels, as fmnist's loop does it: scale and standardise, augment,
    forward, loss, backward, clip (when asked), update at the scheduled learning rate; the loss and the count of
    correct predictions accumulate on the device."""
    c = case.config
    scale, shift = 1.0 / (255.0 * data.std), -data.mean / data.std
    fill = shift  # a black pixel, standardised: what a shift brings in
    smoothing = c.label_smoothing
    factor = schedule(c, math.ceil(data.samples / c.batch_size))
    base_lr, t = c.learning_rate, [0]
    stats = torch.zeros(2, device=dev)
    if c.loss == "cross_entropy":
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)
    else:  # mean over the batch of the summed squared error of the softmax against one-hot targets

        def loss_fn(logits: Any, y: Any) -> Any:
            target = torch.nn.functional.one_hot(y, CLASSES).to(logits.dtype)
            return (logits.softmax(1) - target).square().sum() / logits.shape[0]

    def step(images: Any, y: Any) -> None:
        x = images.to(torch.float32).mul_(scale).add_(shift)
        if c.augment_shift or c.augment_flip:
            u = torch.rand((x.shape[0], 3), device=dev)
            x = torch_augment(torch, x, u, c.augment_shift, c.augment_flip, fill)
        t[0] += 1
        if factor is not None:
            for group in optimizer.param_groups:
                group["lr"] = base_lr * factor(t[0])
        logits = network(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if c.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(network.parameters(), c.max_grad_norm)
        optimizer.step()
        stats[0] += loss.detach()
        stats[1] += (logits.argmax(1) == y).sum()

    return step
