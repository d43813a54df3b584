"""``fmnist train``: every DA6401 ``train.py`` flag, plus devices, run directories, resume and early stopping."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from fmnist import names
from fmnist.cli.common import console, fail
from fmnist.training.config import PRESETS, ConfigError, TrainConfig

DEFAULTS = TrainConfig()


def canonical_choice(kind: str) -> Callable[[str | None], str | None]:
    """A Typer callback that accepts every spelling ``fmnist.names`` knows for ``kind`` and returns the canonical
    value; an unknown one is a usage error (one line, exit 2) that suggests the nearest and lists the valid ones."""

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return names.canonical(kind, value)
        except names.UnknownNameError as err:
            raise typer.BadParameter(str(err)) from None

    return check


def _preset(value: str | None) -> str | None:
    try:
        return None if value is None else names.choose("preset", value, PRESETS)
    except names.UnknownNameError as err:
        raise typer.BadParameter(str(err)) from None


def choice_option(kind: str, *declarations: str, text: str) -> Any:
    """A Typer option taking any spelling of a ``kind`` value, its help text listing the valid values."""
    return typer.Option(*declarations, help=f"{text} {', '.join(names.shown(kind))}.", callback=canonical_choice(kind))


def _default(kind: str) -> str:
    return names.display(kind, getattr(DEFAULTS, kind))


def check_out(out: Path | None, option: str = "--out") -> None:
    """Stop (one line, exit 2) when ``out`` or a directory above it is an existing file."""
    if out is None:
        return
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                fail(f"{option}: {path} is a file, not a directory; choose a directory for the results", 2)
            return


def register(app: typer.Typer) -> None:
    app.command("train", no_args_is_help=False)(train)


def train(
    ctx: typer.Context,
    wandb_project: Annotated[
        str | None, typer.Option("--wandb_project", "-wp", help="W&B project (implies --wandb).", show_default=False)
    ] = None,
    wandb_entity: Annotated[
        str | None, typer.Option("--wandb_entity", "-we", help="W&B entity (implies --wandb).", show_default=False)
    ] = None,
    dataset: Annotated[str, choice_option("dataset", "--dataset", "-d", text="Dataset:")] = _default("dataset"),
    epochs: Annotated[int, typer.Option("--epochs", "-e", help="Passes over the training split.")] = DEFAULTS.epochs,
    batch_size: Annotated[int, typer.Option("--batch_size", "-b", help="Samples per step.")] = DEFAULTS.batch_size,
    loss: Annotated[str, choice_option("loss", "--loss", "-l", text="Loss on the softmax outputs:")] = _default("loss"),
    optimizer: Annotated[
        str, choice_option("optimizer", "--optimizer", "-o", text="Update rule (nesterov = nag):")
    ] = _default("optimizer"),
    learning_rate: Annotated[
        float, typer.Option("--learning_rate", "-lr", help="Learning rate.")
    ] = DEFAULTS.learning_rate,
    momentum: Annotated[float, typer.Option("--momentum", "-m", help="Momentum (momentum, nag).")] = DEFAULTS.momentum,
    beta: Annotated[float, typer.Option("--beta", "-beta", help="RMSprop decay β.")] = DEFAULTS.beta,
    beta1: Annotated[float, typer.Option("--beta1", "-beta1", help="Adam/Nadam β₁.")] = DEFAULTS.beta1,
    beta2: Annotated[float, typer.Option("--beta2", "-beta2", help="Adam/Nadam β₂.")] = DEFAULTS.beta2,
    epsilon: Annotated[float, typer.Option("--epsilon", "-eps", help="ε of RMSprop/Adam/Nadam.")] = DEFAULTS.epsilon,
    weight_decay: Annotated[
        float, typer.Option("--weight_decay", "-w_d", help="L2 weight decay (added to the gradient).")
    ] = DEFAULTS.weight_decay,
    weight_init: Annotated[
        str, choice_option("weight_init", "--weight_init", "-w_i", text="Weight initialisation:")
    ] = _default("weight_init"),
    num_layers: Annotated[int, typer.Option("--num_layers", "-nhl", help="Hidden layers.")] = DEFAULTS.num_layers,
    hidden_size: Annotated[
        int, typer.Option("--hidden_size", "-sz", help="Neurons per hidden layer.")
    ] = DEFAULTS.hidden_size,
    activation: Annotated[str, choice_option("activation", "--activation", "-a", text="Hidden activation:")] = _default(
        "activation"
    ),
    hidden_sizes: Annotated[
        str | None,
        typer.Option(
            "--hidden-sizes", help="Uneven hidden widths, e.g. 256,128 (overrides -nhl/-sz).", show_default=False
        ),
    ] = None,
    model: Annotated[
        str, choice_option("model", "--model", text="Network: an MLP, or a CNN whose dense head is -nhl/-sz:")
    ] = _default("model"),
    conv_channels: Annotated[
        str,
        typer.Option("--conv-channels", help="CNN: channels of each convolution block (each ends in a 2x2 max pool)."),
    ] = ",".join(map(str, DEFAULTS.conv_channels)),
    convs_per_block: Annotated[
        str, typer.Option("--convs-per-block", help="CNN: convolutions in each block (one count, or one per block).")
    ] = ",".join(map(str, DEFAULTS.convs_per_block)),
    kernel_size: Annotated[
        int, typer.Option("--kernel-size", help="CNN: convolution kernel size (odd; 'same' padding).")
    ] = DEFAULTS.kernel_size,
    conv_dropout: Annotated[
        float, typer.Option("--conv-dropout", help="CNN: dropout rate of the features before the dense head.")
    ] = DEFAULTS.conv_dropout,
    batch_norm: Annotated[
        bool,
        typer.Option("--batch-norm/--no-batch-norm", help="CNN: batch norm after each convolution and dense layer."),
    ] = DEFAULTS.batch_norm,
    device: Annotated[
        str, choice_option("device", "--device", text="Device (gpu runs on CuPy; auto takes the GPU where usable):")
    ] = _default("device"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of weights, split and shuffles.")] = DEFAULTS.seed,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", envvar="FMNIST_DATA_DIR", help="Directory searched first for the IDX files."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run directory (default runs/<timestamp>-...).", show_default=False)
    ] = None,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Share of the training set held out for validation.")
    ] = DEFAULTS.val_fraction,
    patience: Annotated[
        int | None, typer.Option("--patience", help="Stop after this many epochs without a better val loss.")
    ] = None,
    lr_schedule: Annotated[
        str, choice_option("lr_schedule", "--lr-schedule", text="Learning rate over the run:")
    ] = _default("lr_schedule"),
    warmup_epochs: Annotated[
        float, typer.Option("--warmup-epochs", help="Linear learning-rate warm-up, in epochs.")
    ] = DEFAULTS.warmup_epochs,
    lr_step_epochs: Annotated[
        int, typer.Option("--lr-step-epochs", help="With --lr-schedule step: epochs between decays.")
    ] = DEFAULTS.lr_step_epochs,
    lr_gamma: Annotated[
        float, typer.Option("--lr-gamma", help="With --lr-schedule step: factor of each decay.")
    ] = DEFAULTS.lr_gamma,
    dropout: Annotated[
        float, typer.Option("--dropout", help="Inverted-dropout rate of the hidden layers (off at evaluation).")
    ] = DEFAULTS.dropout,
    label_smoothing: Annotated[
        float, typer.Option("--label-smoothing", help="Label smoothing ε of cross-entropy.")
    ] = DEFAULTS.label_smoothing,
    decoupled_weight_decay: Annotated[
        bool,
        typer.Option(
            "--decoupled-weight-decay/--l2-weight-decay",
            help="AdamW-style decay θ ← θ(1 - lr·w_d) instead of L2 added to the gradient.",
        ),
    ] = DEFAULTS.decoupled_weight_decay,
    max_grad_norm: Annotated[
        float | None, typer.Option("--clip-grad-norm", help="Clip the global gradient L2 norm to this value.")
    ] = None,
    augment_shift: Annotated[
        int, typer.Option("--augment-shift", help="Random shifts of training images by up to N pixels.")
    ] = DEFAULTS.augment_shift,
    augment_flip: Annotated[
        bool, typer.Option("--augment-flip/--no-augment-flip", help="Random horizontal flips of training images.")
    ] = DEFAULTS.augment_flip,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="A configuration file (JSON or YAML, e.g. best_config.json); flags still win."),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help=f"A named configuration: {', '.join(PRESETS)} (best: the most accurate); your flags still win.",
            callback=_preset,
        ),
    ] = None,
    standardize: Annotated[
        bool, typer.Option("--standardize/--no-standardize", help="Standardise pixels with train mean/std.")
    ] = DEFAULTS.standardize,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue an interrupted run directory with its saved configuration."),
    ] = None,
    wandb: Annotated[bool, typer.Option("--wandb", help="Log to Weights & Biases (WANDB_MODE=offline works).")] = False,
) -> None:
    """Train a network and write a run directory (config, metrics, checkpoints, model, plots, report)."""
    from fmnist.rundir.layout import FILES, default_run_dir, read_config

    check_out(out)
    if resume is not None:
        if not (resume / FILES["config"]).is_file() or not (resume / FILES["checkpoint"]).is_file():
            fail(f"--resume: {resume} is not a resumable run (needs {FILES['config']} and {FILES['checkpoint']})", 2)
        try:
            config = read_config(resume)
        except ValueError as err:
            fail(str(err), 2)
        run_dir = resume
    else:
        config = _config_from_options(ctx)
        run_dir = out if out is not None else default_run_dir(config)
        if out is not None and (out / FILES["config"]).exists():
            fail(f"--out: {out} already holds a run; choose another directory or continue it with --resume {out}", 2)
    if config.wandb and importlib.util.find_spec("wandb") is None:
        fail("--wandb needs the wandb package: pip install 'fmnist[wandb]' (set WANDB_MODE=offline without network)", 2)
    run_training(config, run_dir, resume=resume is not None)


def _config_from_options(ctx: typer.Context) -> TrainConfig:
    """The ``TrainConfig`` of the options: each option named like a config field sets it; a preset, then a
    ``--config`` file, fill in what was not typed on the command line. Invalid → one line, exit 2."""
    from fmnist.training.config import OPTIONS, layered, read_config_file

    options = ctx.params
    values = {name: options[name] for name in OPTIONS if name in options}
    values["wandb"] = options["wandb"] or options["wandb_project"] is not None or options["wandb_entity"] is not None
    values["wandb_project"] = options["wandb_project"] or DEFAULTS.wandb_project
    values["data_dir"] = str(options["data_dir"]) if options["data_dir"] is not None else None
    given = {name for name in values if _from_command_line(ctx, name)}
    layers = [PRESETS[options["preset"]]] if options["preset"] is not None else []
    try:
        if options["config_file"] is not None:
            layers.append(read_config_file(options["config_file"]))
    except ConfigError as err:
        fail(f"--config: {err}", 2)
    try:
        values["hidden_sizes"] = _parse_sizes(values["hidden_sizes"])
        return layered(values, given, *layers)
    except ConfigError as err:
        fail(str(err), 2)


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _parse_sizes(text: str | tuple[int, ...] | None) -> tuple[int, ...] | None:
    if text is None or isinstance(text, tuple):
        return text
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--hidden-sizes must be comma-separated integers such as 256,128, got {text!r}") from None
    if not sizes:
        raise ConfigError("--hidden-sizes must list at least one width, e.g. 256,128")
    return sizes


def run_training(config: TrainConfig, run_dir: Path, resume: bool) -> None:
    """Run ``train_run`` with the rich progress display, Ctrl-C handling and clear failures."""
    from fmnist.backend import BackendUnavailableError
    from fmnist.cli.progress import RichProgress, StopOnSigint
    from fmnist.data import DataFileError
    from fmnist.files import ArchiveError
    from fmnist.rundir.driver import train_run
    from fmnist.training.fit import DivergenceError, TrainingInterrupted

    with StopOnSigint(console) as stop, RichProgress(console) as display:
        try:
            train_run(config, run_dir, [display, stop], resume=resume, command=["fmnist", *sys.argv[1:]])
        except TrainingInterrupted:
            raise typer.Exit(130) from None
        except DivergenceError as err:
            fail(f"{err} The last good checkpoint is {run_dir}/checkpoint.npz.")
        except (DataFileError, BackendUnavailableError, ArchiveError) as err:
            fail(str(err))
        except MemoryError as err:  # CuPy's OutOfMemoryError is a MemoryError too
            where = "GPU" if config.device != "cpu" else "host"
            fail(f"out of {where} memory ({type(err).__name__}: {err}); try a smaller --batch_size or model")
