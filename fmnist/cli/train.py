"""``fmnist train``: every DA6401 ``train.py`` flag, plus devices, run directories, resume and early stopping.

Options are read as course README commands write them before click sees them (``CourseCommand``): another spelling
of an option (``-wd``, ``-bs``, ``-epochs``, ``--hidden_layers_count``, ``--use_wandb True``) is the option, widths
after ``-sz`` are one list (``-sz 128 128 64``), and an option fmnist does not have is named as typed
(``No such option: -nh1 (did you mean -nhl / --num_layers?)``) rather than split by click into ``-n h1``.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from fmnist import names
from fmnist.cli.common import console, fail
from fmnist.training.config import PRESETS, ConfigError, TrainConfig

DEFAULTS = TrainConfig()
TYPED = "fmnist.typed"  # ctx.meta key: each option's name as the user typed it (-w_p, --wandb_project...)
SWITCH_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
WIDTHS = ("hidden_size",)  # options that take one or several values (-sz 128 or -sz 128 128 64)
# Options of course programs that fmnist has no need of, by their words: what fmnist does instead
SAVES = {
    ("model", "path", "save"): "fmnist writes the model to RUN_DIR/model.npz; --out chooses RUN_DIR",
    ("model", "save"): "fmnist always saves the model, to RUN_DIR/model.npz",
    ("config", "path", "save"): "fmnist writes the configuration to RUN_DIR/config.json; --out chooses RUN_DIR",
}


class UnknownOption(typer.BadParameter):
    """An option the command does not have, named as typed; one line with a suggestion where one is near."""

    def format_message(self) -> str:
        return self.message


class CourseCommand(TyperCommand):
    """A command whose arguments are first read by ``course_args`` (see the module's docstring)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        options = {flag: p for p in self.get_params(ctx) for flag in (*p.opts, *p.secondary_opts)}
        args, ctx.meta[TYPED] = course_args(args, options)
        return super().parse_args(ctx, args)


def course_args(args: list[str], options: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """``args`` with every option in a form click reads, and each option's name as typed (parameter -> token).

    An option click knows stays as it is; any other is looked up in ``fmnist.names`` (``-wd`` is
    ``--weight_decay``, ``-epochs`` is ``--epochs``, ``--no_wandb`` is ``--no-wandb``). A switch may be followed by
    a truth value (``--use_wandb True``). Widths after ``-sz``/``--hidden_size`` are joined (``128,128,64``).

    Raises:
        UnknownOption: an option the command does not have, or another spelling of one given without its value.
    """
    out: list[str] = []
    typed: dict[str, str] = {}
    i = 0
    while i < len(args):
        token, i = args[i], i + 1
        if token == "--" or not token.startswith("-") or len(token) < 2 or _number(token) or _attached(token, options):
            out += args[i - 1 :] if token == "--" else [token]
            if token == "--":
                break
            continue
        name, has_value, value = token.partition("=")
        param, flag, on = _option(name, options)
        typed.setdefault(param.name, name)
        if _is_switch(param):
            if has_value or (i < len(args) and args[i].lower() in SWITCH_WORDS):
                word = value if has_value else args[i]
                i += 0 if has_value else 1
                if word.lower() not in SWITCH_WORDS:
                    raise UnknownOption(f"{name} takes true or false, got {word!r}")
                on = on == SWITCH_WORDS[word.lower()]
            out += _switch(param, on)
            continue
        if has_value:
            out += [flag, value]
            continue
        taken = _values(args, i, param, aliased=flag != name)
        if not taken:
            raise UnknownOption(
                f"{name} needs a value" if flag == name else f"No such option: {name} (did you mean {flag} VALUE?)"
            )
        i += len(taken)
        out += [flag, ",".join(taken)]
    return out, typed


def _number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _attached(token: str, options: dict[str, Any]) -> bool:
    """``-e5``, ``-lr0.01``: a short option with its number attached, as click and argparse read it."""
    return not token.startswith("--") and any(
        token.startswith(flag) and _number(token[len(flag) :]) for flag in options if len(flag) == 2
    )


def _option(name: str, options: dict[str, Any]) -> tuple[Any, str, bool]:
    """(parameter, the flag click knows, on) for an option as typed, through ``fmnist.names`` where click has
    no such option.

    Raises:
        UnknownOption: no option of the command is called that.
    """
    if name in options:
        return options[name], name, name not in options[name].secondary_opts
    by_field = {p.name: p for p in options.values()}
    switch = names.switch(name)
    field: str | None = switch[0] if switch else None
    if field is None:
        try:
            field = names.parameter(name)
        except names.UnknownNameError:
            field = None
        except names.AmbiguousNameError as err:
            raise UnknownOption(f"No such option: {name} ({err})") from None
    param = by_field.get(field) if field else None
    if param is None:
        raise UnknownOption(f"No such option: {name}{_nearest(name, options)}")
    flag = max(param.opts, key=len)
    return param, flag, switch[1] if switch else True


def _nearest(name: str, options: dict[str, Any]) -> str:
    """`` (did you mean -nhl / --num_layers?)`` for a slip of the keyboard, what fmnist does instead of a course
    program's option to save its model (``--model_save_path``), else nothing."""
    if names.words(name) in SAVES:
        return f" ({SAVES[names.words(name)]})"
    index = {names.key(flag.lstrip("-")): (options[flag].name, flag) for flag in options}
    near = names.suggest(name.lstrip("-"), index)
    if near is None:
        return ""
    return f" (did you mean {' / '.join(sorted(options[near].opts, key=len))}?)"


def _is_switch(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False))


def _switch(param: Any, on: bool) -> list[str]:
    """The flag that sets a switch ``on`` (or off: its ``--no-...`` form; nothing where off is its only state)."""
    if on:
        return [max(param.opts, key=len)]
    return [param.secondary_opts[0]] if param.secondary_opts else []


def _values(args: list[str], i: int, param: Any, aliased: bool) -> list[str]:
    """The value(s) an option takes from ``args[i:]``: one (what click would take; for an option spelled another
    way, not a token that is itself an option), and for widths every number after it (``-sz 128 128 64``)."""
    if i >= len(args) or (aliased and args[i].startswith("-") and not _number(args[i])):
        return []
    taken = [args[i]]
    while param.name in WIDTHS and i + len(taken) < len(args) and args[i + len(taken)].isdigit():
        taken.append(args[i + len(taken)])
    return taken


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
    app.command("train", no_args_is_help=False, cls=CourseCommand)(train)


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
        str,
        typer.Option("--hidden_size", "-sz", help="Neurons per hidden layer, or one width per layer (-sz 128 128 64)."),
    ] = str(DEFAULTS.hidden_size),
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
    wandb: Annotated[
        bool | None,
        typer.Option(
            "--wandb/--no-wandb",
            help="Log to Weights & Biases (on with -wp/-we too; WANDB_MODE=offline works).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a network and write a run directory (config, metrics, checkpoints, model, plots, report)."""
    from fmnist.cli.common import quiet_warnings
    from fmnist.rundir.layout import FILES, default_run_dir, read_config

    quiet_warnings()
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
    if config.wandb:
        check_wandb(_wandb_asked(ctx))
    run_training(config, run_dir, resume=resume is not None)


def check_wandb(asked: str) -> None:
    """Stop (one line, exit 2) before any training where W&B was ``asked`` for (``-wp``, a sweep file's
    ``parameters.wandb_project``...) but cannot log: no wandb package, or not logged in (W&B would prompt, or fail
    with a traceback without a terminal). ``WANDB_MODE=offline`` and ``disabled`` need no login."""
    if importlib.util.find_spec("wandb") is None:
        fail(f"{asked} asks for W&B, which needs the wandb package: pip install 'fmnist[wandb]'", 2)
    from fmnist.rundir.tracking import wandb_login_problem

    problem = wandb_login_problem()
    if problem is not None:
        fail(f"{problem} ({asked} asks for W&B)", 2)


def _wandb_asked(ctx: typer.Context) -> str:
    """What asked for W&B, as the user typed it: ``--wandb``, ``-wp``, ``--wandb_entity``... or a file."""
    typed = ctx.meta.get(TYPED, {})
    for name in ("wandb", "wandb_project", "wandb_entity"):
        if name in typed and _from_command_line(ctx, name):
            return typed[name]
    if ctx.params.get("resume") is not None:
        return f"the run's configuration ({ctx.params['resume']}/config.json)"
    return f"--config {ctx.params['config_file']}" if ctx.params.get("config_file") else "--preset"


def _config_from_options(ctx: typer.Context) -> TrainConfig:
    """The ``TrainConfig`` of the options: each option named like a config field sets it; a preset, then a
    ``--config`` file, fill in what was not typed on the command line. Invalid → one line, exit 2."""
    from fmnist.training.config import OPTIONS, layered, read_config_file

    options = ctx.params
    values = {name: options[name] for name in OPTIONS if name in options}
    named = options["wandb_project"] is not None or options["wandb_entity"] is not None
    values["wandb"] = options["wandb"] if options["wandb"] is not None else named
    values["wandb_project"] = options["wandb_project"] or DEFAULTS.wandb_project
    values["data_dir"] = str(options["data_dir"]) if options["data_dir"] is not None else None
    given = {name for name in values if _from_command_line(ctx, name)}
    _read_widths(values, given, ctx.meta.get(TYPED, {}))
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


def _read_widths(values: dict[str, Any], given: set[str], typed: dict[str, str]) -> None:
    """``-sz 128`` is one width for every layer; ``-sz 128 128 64`` (or ``128,128,64``, ``"[128,128,64]"``) is one
    width per layer (``--hidden-sizes``), whose count must agree with ``-nhl`` where that is typed too."""
    from fmnist.training.config import coerce

    flag = typed.get("hidden_size", "-sz")
    try:
        widths = coerce("hidden_sizes", values["hidden_size"])
    except ConfigError:
        fail(
            f"{flag} takes a width, or one width per hidden layer such as 128 128 64, got {values['hidden_size']!r}", 2
        )
    if len(widths) == 1:
        values["hidden_size"] = widths[0]
        return
    if values.get("hidden_sizes") is not None:
        fail(f"{flag} gives one width per layer, and so does --hidden-sizes: give one of them", 2)
    if "num_layers" in given and values["num_layers"] != len(widths):
        layers = typed.get("num_layers", "-nhl")
        fail(
            f"{flag} gives {len(widths)} widths ({' '.join(map(str, widths))}) but {layers} says "
            f"{values['num_layers']} hidden layers: give one width per hidden layer, or leave out {layers}",
            2,
        )
    values["hidden_size"], values["hidden_sizes"] = DEFAULTS.hidden_size, widths
    given.add("hidden_sizes")


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
    from fmnist.rundir.tracking import TrackingError
    from fmnist.training.fit import DivergenceError, TrainingInterrupted

    new = not run_dir.exists()
    with StopOnSigint(console) as stop, RichProgress(console) as display:
        try:
            train_run(config, run_dir, [display, stop], resume=resume, command=["fmnist", *sys.argv[1:]])
        except TrackingError as err:  # before the first step: the run directory holds only its configuration
            if new and not resume:
                shutil.rmtree(run_dir, ignore_errors=True)
            fail(str(err))
        except TrainingInterrupted:
            raise typer.Exit(130) from None
        except DivergenceError as err:
            fail(f"{err} The last good checkpoint is {run_dir}/checkpoint.npz.")
        except BackendUnavailableError as err:  # asked for a device that cannot run here: before any work
            fail(str(err), 2)
        except (DataFileError, ArchiveError) as err:
            fail(str(err))
        except MemoryError as err:  # CuPy's OutOfMemoryError is a MemoryError too
            where = "GPU" if config.device != "cpu" else "host"
            fail(f"out of {where} memory ({type(err).__name__}: {err}); try a smaller --batch_size or model")
