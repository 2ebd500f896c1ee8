"""The ``loopkit`` command: a thin Typer layer over the core.

Core code raises ``LoopkitError``; only here is it turned into one ``Error: ...`` line and exit
code 1. Anything else is a bug: a one-line hint, and the traceback with ``--debug``.
Heavy libraries are imported inside the commands that need them, never at start-up.
"""

from __future__ import annotations

import gc
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.markup import escape
from typer.core import TyperGroup

from loopkit import __version__, stopping
from loopkit.console import make_console
from loopkit.errors import LoopkitError
from loopkit.files import check_dir_target, os_error_message, printable, shown
from loopkit.secrets import masked_command, masked_override, redact

err_console = make_console(stderr=True)
console = make_console()


def _debug_enabled(ctx: typer.Context | None) -> bool:
    if os.environ.get("LOOPKIT_DEBUG", "") not in ("", "0"):
        return True
    root = ctx.find_root() if ctx else None
    return bool(root and root.params.get("debug"))


class LoopkitGroup(TyperGroup):
    """Converts every error raised by a command into one line and an exit code."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        # The command line as given (secrets masked), for the run's manifest.json.
        ctx.meta[COMMAND] = ["loopkit", *masked_command(list(args))]
        return super().parse_args(ctx, _debug_first(args))

    def invoke(self, ctx: typer.Context) -> Any:
        stopping.reset()
        try:
            return super().invoke(ctx)
        except LoopkitError as exc:
            _if_stopping(ctx, exc)
            if _debug_enabled(ctx):
                raise
            _print_error(redact(str(exc)))
            ctx.exit(1)
        except KeyboardInterrupt:
            _interrupted(ctx)
        except Exception as exc:
            _if_stopping(ctx, exc)
            if _is_usage_error(exc) and not _debug_enabled(ctx):
                command = exc.ctx.command_path if getattr(exc, "ctx", None) else "loopkit"
                _print_error(f"{exc.format_message()} (see {command} --help; recipe values are "
                             "changed with --set, e.g. --set loop.rounds=3)")
                ctx.exit(1)
            if _is_framework_signal(exc) or _debug_enabled(ctx):
                raise
            line = os_error_message(exc) if isinstance(exc, OSError) else None
            if line is not None:  # the file system said no (a file in the path, a long name, no permission...)
                _print_error(line)
                ctx.exit(1)
            _print_error(f"unexpected {type(exc).__name__}: {redact(str(exc))} "
                         "(this is a bug in loopkit or a plugin; rerun with --debug for the traceback)")
            ctx.exit(1)


COMMAND = "loopkit.command"  # ctx.meta key: the command line, masked


def _debug_first(args: list[str]) -> list[str]:
    """``--debug`` is the group's option; accept it after the command too (``loopkit run x.yaml --debug``)."""
    end = args.index("--") if "--" in args else len(args)
    head = [a for a in args[:end] if a != "--debug"]
    if len(head) == end:
        return args
    return ["--debug", *head, *args[end:]]


def _print_error(message: str) -> None:
    err_console.print(f"[bold red]Error:[/] {escape(printable(message))}", highlight=False, soft_wrap=True)


def _interrupted(ctx: typer.Context, after: str | None = None) -> None:
    """A stop by a signal (Ctrl-C, SIGTERM, SIGHUP) exits with 128 + its number: 130, 143, 129."""
    try:
        err_console.print(f"Interrupted ({stopping.name()})" + (f"; while stopping: {redact(after)}" if after else "."),
                          highlight=False, markup=False, soft_wrap=True)
    except OSError:  # a closed terminal (SIGHUP) takes no more output; the exit code still says what happened
        pass
    ctx.exit(stopping.exit_code())


def _if_stopping(ctx: typer.Context, exc: Exception) -> None:
    """An error while a signal stops the command is reported as the stop (it is often its effect: a helper got the signal too)."""
    if stopping.requested() and not _is_framework_signal(exc) and not _debug_enabled(ctx):
        _interrupted(ctx, f"{type(exc).__name__}: {exc}")


def _is_usage_error(exc: Exception) -> bool:
    """A command line typer/click could not parse (unknown option, missing argument, ...)."""
    return _is_framework_signal(exc) and any(c.__name__ == "UsageError" for c in type(exc).__mro__)


def _is_framework_signal(exc: Exception) -> bool:
    """Exit, Abort and usage errors of typer/click: control flow, handled by the framework."""
    return type(exc).__module__.split(".")[0] in ("typer", "click")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"loopkit {__version__}")
        raise typer.Exit()


def _accuracy(value: float) -> float:
    """--target is an accuracy: a finite number from 0 to 1 (nan would pass a plain range check)."""
    if not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"{value:g} is not an accuracy; give a number from 0 to 1, e.g. --target 0.5")
    return value


def _grace(value: float | None) -> float:
    try:
        return stopping.grace_seconds(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


GraceOption = typer.Option(
    None, "--grace", envvar=stopping.GRACE_ENV, callback=_grace, metavar="SECONDS",
    help="On SIGINT/SIGTERM/SIGHUP, wait this long for the teacher calls in flight before exiting (default 20).",
)
OverridesOption = typer.Option(None, "--set", help="Override a recipe value: key.path=value (repeatable).")
StrictOption = typer.Option(False, "--strict", help="Refuse data problems a task only warns about (e.g. seed/test overlap).")
CheckTeacherOption = typer.Option(
    False, "--check-teacher", help="Make one cheap call through the teacher's backend first (a wrong api_base, model or "
                                   "key fails at once); journaled and charged like any other call.")


def _with_strict(overrides: list[str] | None, strict: bool) -> list[str]:
    """``--strict`` is the task's own ``strict`` param (tasks that warn about their data have one)."""
    return [*(overrides or []), *(["task.params.strict=true"] if strict else [])]


def _status(entry) -> str:
    """``ok``, or ``needs PACKAGE (how to install it)`` for a component whose optional package is missing here."""
    try:
        missing = entry.load().missing()
    except Exception:  # a plugin's broken class is run's to report, with its own error
        return "ok"
    return f"needs {missing}" if missing else "ok"


def build_app() -> typer.Typer:
    """A fresh app with every plugin's commands added (tests build one per test)."""
    app = typer.Typer(
        cls=LoopkitGroup, no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
        help="Closed-loop synthetic data generation for fine-tuning small language models.",
    )

    @app.callback()
    def main(
        debug: bool = typer.Option(False, "--debug", help="Show full tracebacks (or set LOOPKIT_DEBUG=1)."),
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
    ) -> None:
        """Closed-loop synthetic data generation for fine-tuning small language models."""

    @app.command()
    def run(
        ctx: typer.Context,
        recipe: Optional[Path] = typer.Argument(None, help="The recipe YAML file (optional with --resume)."),
        overrides: Optional[List[str]] = OverridesOption,
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Parent directory for the run directory (default: the recipe's output_dir)."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run directory after its last complete round."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Call the teacher again even where its journal already has the answer."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and its expected spend; load no model, call nothing."),
        strict: bool = StrictOption,
        grace: Optional[float] = GraceOption,
        check_teacher: bool = CheckTeacherOption,
    ) -> None:
        """Run the closed loop of a recipe; everything lands in a new run directory (or the one resumed)."""
        # The command line and its overrides (secrets masked), for the run's manifest.json.
        command = {"command": shlex.join(ctx.meta.get(COMMAND, [])),
                   "overrides": [masked_override(o) for o in overrides or []]}
        with stopping.handling(grace):
            _run(recipe, overrides, output, resume, no_cache, dry_run, strict, command, check_teacher)

    def _run(recipe, overrides, output, resume, no_cache, dry_run, strict, command, check_teacher=False) -> None:
        from loopkit.errors import LoopkitError
        from loopkit.recipe import load_recipe

        if recipe is None and resume is None:
            raise LoopkitError("give a recipe (loopkit run RECIPE) or a run directory to continue (loopkit run --resume RUN_DIR)")
        own = resume is not None and recipe is None  # the run's own recipe.yaml: its paths are as the run used them
        if resume is not None:
            from loopkit.runner import resumable

            recipe = resumable(resume, recipe)
        resolved = load_recipe(recipe, _with_strict(overrides, strict), paths_from_folder=not own)
        if dry_run:
            from loopkit.runner import dry_run as print_plan

            return print_plan(resolved, console)
        from loopkit.runner import run_with_display

        run_with_display(resolved, output, console, use_cache=not no_cache, resume=resume, command=command,
                         check_teacher=check_teacher)

    @app.command()
    def validate(
        recipe: Path = typer.Argument(..., help="The recipe YAML file."),
        overrides: Optional[List[str]] = OverridesOption,
        strict: bool = StrictOption,
        check_teacher: bool = CheckTeacherOption,
    ) -> None:
        """Check a recipe (names, params, data) without loading any model (--check-teacher: and call the teacher once)."""
        from loopkit.prepare import validate_recipe
        from loopkit.recipe import load_recipe

        resolved = load_recipe(recipe, _with_strict(overrides, strict))
        data, unchecked = validate_recipe(resolved)
        if check_teacher:
            from loopkit.prepare import bind_teacher
            from loopkit.runner import checked_teacher

            teacher = resolved.build("teacher")
            bind_teacher(teacher, resolved.build("task"), resolved)  # a missing key is an error here, not a warning
            console.print(checked_teacher(resolved.recipe.teacher.name, teacher.preflight(), False), highlight=False)
        for warning in (data.warnings if data else ()):
            console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
        for reason in unchecked:
            console.print(f"[yellow]not checked here:[/] {escape(reason)}", highlight=False)
        r = resolved.recipe
        sizes = f"{len(data.pool)} seeds, {len(data.test)} test" if data else "data not loaded here"
        console.print(
            f"[green]OK[/] {escape(shown(recipe))}: task {r.task.name} ({sizes}), "
            f"student {r.student.name}, teacher {r.teacher.name}, selector {r.selector.name}, "
            f"trainer {r.trainer.name}; {r.loop.mode}, {r.loop.rounds} rounds x {r.loop.per_round}",
            highlight=False,
        )

    @app.command()
    def export(
        run_dir: Path = typer.Argument(..., help="The run directory (as printed by `loopkit run`)."),
        to: Path = typer.Option(..., "--to", help="A new (or empty) directory for model/ and data/."),
        round: Optional[int] = typer.Option(None, "--round", min=0, help="The round whose student to export (default: the last one with a saved model)."),
        merge: bool = typer.Option(False, "--merge", help="Merge a LoRA adapter into its base model instead of copying the adapter."),
        license_id: str = typer.Option("unknown", "--license", help="The license the model and data cards state (a hub license id, e.g. apache-2.0)."),
    ) -> None:
        """Export a run's student (HF model directory), its synthetic data (datasets, TRL-ready) and an lm-eval task."""
        from loopkit.export import export_run

        result = export_run(run_dir, to, round, merge, license_id)
        plain = {"highlight": False, "markup": False}  # paths as they are
        console.print(f"round {result.round} student ({result.model_kind}, card README.md): {result.model_dir}", **plain)
        console.print(f"synthetic data ({result.rows} rows, card README.md): {result.data_dir}", **plain)
        console.print(f"lm-eval task {result.lm_eval.name}: {result.lm_eval.directory}", **plain)
        if result.lm_eval_command:
            console.print(f"  {result.lm_eval_command}", highlight=False, markup=False, soft_wrap=True)
        if result.lm_eval_note:
            console.print(f"  note: {result.lm_eval_note}", highlight=False, markup=False)

    @app.command("eval")
    def eval_(
        model: Path = typer.Argument(..., help="An HF model directory, a `loopkit export` output, or a run directory."),
        task: Optional[Path] = typer.Option(None, "--task", help="The recipe whose task and test split to evaluate on (default for a run: its own)."),
        overrides: Optional[List[str]] = OverridesOption,
        round: Optional[int] = typer.Option(None, "--round", min=0, help="A run's round to evaluate (default: its last complete round)."),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate on the first N test items only."),
        chat: Optional[bool] = typer.Option(None, "--chat-template/--no-chat-template", help="Prompt through the tokenizer's chat template (default: if it has one, as the loop does)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Also write the results to this JSON file."),
    ) -> None:
        """Evaluate a model (or a run's round) on a recipe's test split: accuracy ± binomial SE, per sub-task."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from loopkit.console import table as Table

        from loopkit.evaluator import evaluate_model
        from loopkit.runner import quiet_libraries

        if out is not None:  # a bad --out fails before any model loads
            if out.is_dir():
                raise LoopkitError(f"--out {shown(out)} is a directory; give a file name, e.g. {shown(out / 'eval.json')}")
            check_dir_target(out.parent, "--out")
        with Progress(TextColumn("evaluate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bars:
            def progress(total: int):
                bar = bars.add_task("", total=total)
                return lambda n: bars.advance(bar, n)

            quiet_libraries()
            result = evaluate_model(model, task, overrides or [], round, limit, chat, progress)
        e = result.evaluation
        table = Table("test items", "n", "accuracy ± SE (binomial, over test items)",
                      title=f"{result.model} on {result.task}'s test split"
                            + (f" (first {result.limit})" if result.limit else "")
                            + ("; chat template" if result.chat_template else ""))
        for name, score in [("all", e.score), *e.subtasks.items()]:
            table.add_row(name, str(score.n), f"{score.accuracy:.1%} ± {score.se:.1%}")
        console.print(table)
        if out is not None:
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
            except OSError as exc:
                raise LoopkitError(f"--out {shown(out)}: cannot write it ({exc.strerror}); choose another file") from None
            console.print(f"wrote {out}", highlight=False)

    @app.command()
    def compare(
        recipe: Path = typer.Argument(..., help="The recipe YAML file every arm starts from."),
        selectors: str = typer.Option("loss,random", "--selectors", help="Comma-separated selector names, one arm each."),
        seeds: int = typer.Option(3, "--seeds", min=1, max=1000, help="Seeds per arm (the recipe's seed, +1, +2, ...)."),
        static: bool = typer.Option(False, "--static", help="Add both static baselines (the same budget from random seeds, at once): static trains once, static-matched as often as the active arms."),
        jobs: int = typer.Option(1, "--jobs", min=1, max=1024, help="Arms run at once, each in its own process."),
        directory: Optional[Path] = typer.Option(None, "--dir", "-d", help="The comparison directory (default: <output_dir>/<name>-compare); run again to resume."),
        overrides: Optional[List[str]] = OverridesOption,
        target: float = typer.Option(0.5, "--target", callback=_accuracy, help="Accuracy for N(target) in the final report."),
        grace: Optional[float] = GraceOption,
        engine: str = typer.Option("local", "--engine", help="local: arm processes on this machine; ray: arms as Ray tasks (pip install 'loopkit[ray]')."),
        address: Optional[str] = typer.Option(None, "--address", help="--engine ray: the cluster to join (default: RAY_ADDRESS, else a local instance)."),
        cpus_per_arm: float = typer.Option(1.0, "--cpus-per-arm", min=0.01, help="--engine ray: CPUs each arm asks Ray for (also its torch threads)."),
        gpus_per_arm: float = typer.Option(0.0, "--gpus-per-arm", min=0, help="--engine ray: GPUs each arm asks Ray for (Ray sets its CUDA_VISIBLE_DEVICES)."),
    ) -> None:
        """Run every arm (selector x seed, plus --static: static and static-matched) under one directory, then report them."""
        from loopkit.compare import Arms

        if engine not in ("local", "ray"):
            raise LoopkitError(f"--engine {engine}: choose local (processes on this machine) or ray")
        if engine == "ray":
            from loopkit.ray_arms import RayArms

            processes: Arms = RayArms(address, cpus_per_arm, gpus_per_arm)
        else:
            processes = Arms()
        # A signal is forwarded to every arm, each stops within the grace period; a second one kills them.
        try:
            with stopping.handling(grace, on_stop=processes.forward, watchdog=2 * stopping.SLACK):
                stopping.on_exit_now(processes.kill)
                _compare(recipe, selectors, seeds, static, jobs, directory, overrides, target, processes, grace)
        finally:
            processes.close()

    def _compare(recipe, selectors, seeds, static, jobs, directory, overrides, target, processes, grace) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

        from loopkit.compare import plan_arms, run_arms
        from loopkit.console import on_terminal
        from loopkit.recipe import load_recipe
        from loopkit.runner import StatusBars

        resolved = load_recipe(recipe, overrides or [])
        names = [s.strip() for s in selectors.split(",") if s.strip()]
        if not names and not static:
            raise LoopkitError("--selectors is empty; name at least one selector (e.g. --selectors loss,random)")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # two arms of one name would share a run directory
            raise LoopkitError(f"--selectors names {', '.join(twice)} more than once; name each selector once")
        arms = plan_arms(resolved, names, seeds, static)
        target_dir = directory or Path(resolved.recipe.output_dir) / f"{resolved.recipe.name}-compare"
        check_dir_target(target_dir, "--dir")
        jobs, how = processes.schedule(jobs, len(arms))
        gpus = processes.gpus()
        on = f", one GPU each, round robin over {','.join(gpus)} (CUDA_VISIBLE_DEVICES)" if gpus else ""
        console.print(f"comparison directory: {target_dir.absolute()} ({len(arms)} arms, {how}{on})", highlight=False,
                      markup=False)
        running: dict[str, str] = {}  # arm -> what it does now (above the bar on a terminal)
        live = on_terminal(console)

        def doing() -> str:
            return "\n".join(f"{name}: {what}" for name, what in list(running.items()))

        with StatusBars(doing, TextColumn("[bold]arms"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, disable=not live) as bars:  # off a terminal: the lines below only
            overall = bars.add_task("", total=len(arms))

            def on_change(arm, state):
                if state.startswith(("done", "failed", "interrupted", "not started")):
                    running.pop(arm.name, None)
                    bars.advance(overall)
                else:
                    running[arm.name] = state
                console.print(f"{arm.name}: {state}", highlight=False, markup=False)

            def on_status(arm, status):
                if not live and running[arm.name].split(":")[0] != status.split(":")[0]:
                    console.print(f"{arm.name}: {status}", highlight=False, markup=False)  # off a terminal: each new round
                running[arm.name] = status

            states = run_arms(recipe, resolved, arms, target_dir, jobs, overrides or [], on_change, processes, grace,
                              on_status, gpus=gpus)
        stop = stopping.requested()
        if stop is not None:
            unfinished = [name for name, state in states.items() if state != "done"]
            console.print(f"stopped by {stop.name}: {len(unfinished)} arm(s) unfinished ({', '.join(unfinished) or 'none'}; "
                          f"their complete rounds are kept in {target_dir}); continue with the same command: "
                          f"{_same_command('compare')}", highlight=False, markup=False, soft_wrap=True)
            raise KeyboardInterrupt
        failed = [name for name, state in states.items() if state != "done"]
        _print_report([target_dir], target, target_dir)
        if failed:
            raise LoopkitError(f"{len(failed)} arm(s) failed ({', '.join(failed)}); see their .log files in {target_dir}, "
                               "then run the same command again to resume them")

    def _same_command(name: str) -> str:
        argv = sys.argv[1:]
        return shlex.join(["loopkit", *argv]) if name in argv else f"loopkit {name} ... (as before)"

    @app.command()
    def report(
        paths: List[Path] = typer.Argument(..., help="Run directories, or comparison directories holding them."),
        target: float = typer.Option(0.5, "--target", callback=_accuracy, help="Accuracy τ for N(τ), the samples needed to reach it."),
        out: Optional[Path] = typer.Option(None, "--out", help="Where report.json and the PNGs go (default: the first path)."),
    ) -> None:
        """Per arm: mean ± SE over seeds of accuracy, AUC, N(τ), spend and training compute; paired differences; plots; fidelity."""
        _print_report(paths, target, out or paths[0])

    def _print_report(paths: list[Path], target: float, out: Path) -> None:
        from loopkit.report import find_runs, plot, summarize, tables

        check_dir_target(out, "--out")
        data = summarize(find_runs(paths), target)
        try:
            out.mkdir(parents=True, exist_ok=True)
            pngs = plot(data, out)
            (out / "report.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:  # a read-only run directory, a full disk: the numbers are fine, the place is not
            raise LoopkitError(f"cannot write the report in {out}: {exc.strerror}; choose another --out directory") from None
        for part in tables(data):
            console.print(part, highlight=False)
        for warning in data["warnings"]:
            console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
        f = data["fidelity"]
        if f["available"]:
            fmt = lambda x: "n/a" if x is None else f"{x:+.2f}"  # noqa: E731
            def within(key: str, groups: str) -> str:
                w = f.get(key)
                return (f"within {groups} {w['rho']:+.2f} (p {w['p']:.2g}, {w['pairs']} pairs in {w['groups']} groups); "
                        if w else f"within {groups} n/a; ")
            inside = within("within_round_spearman", "run-rounds") + (
                within("within_round_subtask_spearman", "run-rounds and sub-tasks") if f.get("within_round_subtask_spearman") else "")
            console.print(f"fidelity (Spearman, own loss of seed vs offspring question): {inside}pooled "
                          f"{fmt(f['per_item_spearman'])} over {f['pairs']} pairs ({f['kept_pairs']} kept); data-set "
                          f"level (medians) {fmt(f['dataset_level_spearman'])} over {f['groups']} run-rounds", highlight=False)
        console.print(f"wrote {out / 'report.json'} and {', '.join(p.name for p in pngs)}", highlight=False, markup=False)

    @app.command("list-plugins")
    def list_plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
        """Every task, model, teacher, selector and trainer, and where it comes from."""
        from loopkit.plugins import registry

        reg = registry()
        rows = [
            {"kind": e.kind, "name": e.name, "distribution": e.distribution, "version": e.version, "status": _status(e)}
            for e in reg.entries()
        ] + [
            {"kind": "plugin", "name": f.entry_point, "distribution": f.distribution, "version": f.version,
             "status": f"failed: {f.error}"}
            for f in reg.failures
        ]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        from loopkit.console import table as Table

        table = Table("kind", "name", "distribution", "version", "status", title="loopkit plugins")
        for row in rows:
            kind = row["status"].split()[0]
            status = {"ok": "[green]ok[/]", "needs": f"[yellow]{escape(row['status'])}[/]"}.get(kind, f"[red]{escape(row['status'])}[/]")
            table.add_row(*(escape(str(row[k])) for k in ("kind", "name", "distribution", "version")), status)
        console.print(table)

    @app.command()
    def env(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
        """Versions of loopkit, its plugins and libraries, and the device (paste into bug reports)."""
        from loopkit.environment import describe
        from loopkit.plugins import registry

        info = describe(registry())
        if as_json:
            typer.echo(json.dumps(info, indent=2))
            return
        for key, value in info.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            elif isinstance(value, list):
                value = ", ".join(value)
            console.print(f"[bold]{key}[/]: {escape(str(value))}", highlight=False)

    plugin_app = typer.Typer(help="Write your own components.", no_args_is_help=True)
    app.add_typer(plugin_app, name="plugin")

    @plugin_app.command("new")
    def plugin_new(
        kind: str = typer.Option(..., "--kind", help="selector, task, model, teacher or trainer"),
        name: str = typer.Option(..., "--name", help="the name recipes will use, e.g. my-selector"),
        directory: Path = typer.Option(Path("."), "--dir", help="where to create loopkit-<kind>-<name>/"),
    ) -> None:
        """Scaffold an installable loopkit-<kind>-<name> package with a component, README and a passing test."""
        from loopkit.scaffold import new_plugin

        root = new_plugin(kind, name, directory)
        console.print(f"created {root}; next: pip install -e '{root}[test]' && pytest {root}", highlight=False, markup=False,
                      soft_wrap=True)  # one line to copy, on a terminal too

    from loopkit.plugins import plugin_host

    plugin_host().pm.hook.register_commands(app=app)
    return app


def main() -> None:
    """Console-script entry point."""
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints as \xff, never crashes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    app = build_app()
    try:
        app(prog_name="loopkit")
    finally:
        if stopping.requested() is not None:
            # A signal stopped us and what is kept is on disk: skip the interpreter's final garbage
            # collection over torch and friends (seconds a preemption's deadline cannot spare).
            gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
