"""What one `edge-classify` run was asked to do, and the checks made before anything is read
or written: flags that go together, and every path to be written against the inputs and each
other (edge.paths)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from review_classifier.edge.output import OUTPUT_FORMATS
from review_classifier.edge.paths import Written, check_paths, output_files
from review_classifier.edge.records import INPUT_FORMATS, ON_ERROR, STDIN, expand_sources, format_of
from review_classifier.shared.errors import ClassifierError

ENGINES = ("local", "ray")


@dataclass
class ScoreOptions:
    """Everything one `edge-classify` run was asked to do (the CLI's flags, checked in `check`)."""
    sources: list[str] = field(default_factory=lambda: [STDIN])
    model: Path | None = None
    input_format: str = "lines"
    text_field: str | None = None
    label_field: str | None = None
    output_format: str | None = None   # tsv (local) or parquet (ray) unless given
    output: Path | None = None
    top_k: int = 1
    empty: str = "mark"
    errors: str = "strict"
    evaluate: bool = False
    eval_json: Path | None = None
    batch_size: int = 32
    windows: int | None = None   # None: the bundle's text policy setting
    threads: int | None = None
    on_error: str = "stop"
    rejects: Path | None = None
    resume: bool = False
    engine: str = "local"
    address: str | None = None
    id_column: str | None = None
    actors: int | None = None
    slice_column: str | None = None   # --eval: also accuracy by this column's values
    report: Path | None = None        # --eval: figures and report.html in this folder (edge.report)

    def check(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise ClassifierError(f"--input-format must be one of {INPUT_FORMATS}, got {self.input_format!r}")
        if self.on_error not in ON_ERROR:
            raise ClassifierError(f"--on-error must be one of {ON_ERROR}, got {self.on_error!r}")
        if self.engine not in ENGINES:
            raise ClassifierError(f"--engine must be one of {ENGINES}, got {self.engine!r}")
        # a folder becomes its files, a glob its matches; named pipes and character devices
        # (`<(cmd)`, /dev/stdin) are read like files
        self.sources = expand_sources(self.sources)
        if self.evaluate and any(format_of(s, self.input_format) == "lines" for s in self.sources):
            raise ClassifierError("--eval needs labelled input: CSV, JSONL or Parquet (--input-format)")
        if self.eval_json is not None and not self.evaluate:
            raise ClassifierError("--eval-json goes with --eval")
        for flag, value in (("--slice-column", self.slice_column), ("--report", self.report)):
            if value is not None and not self.evaluate:
                raise ClassifierError(f"{flag} goes with --eval")
        if self.report is not None:
            from review_classifier.edge.report import require_matplotlib

            require_matplotlib()   # before the scoring, not after it
        if (self.on_error == "skip") != (self.rejects is not None):
            raise ClassifierError("--on-error skip and --rejects FILE go together (skipped records must go somewhere)")
        if self.engine == "ray":
            self._check_ray()
        else:
            self._check_local()

    def _check_local(self) -> None:
        self.output_format = self.output_format or "tsv"
        if self.output_format not in OUTPUT_FORMATS:
            raise ClassifierError(f"--format must be one of {OUTPUT_FORMATS}, got {self.output_format!r}")
        for flag, value in (("--address", self.address), ("--id-column", self.id_column), ("--actors", self.actors)):
            if value is not None:
                raise ClassifierError(f"{flag} goes with --engine ray")
        check_paths(self.sources, self.written())
        if self.resume:
            if self.output is None:
                raise ClassifierError("--resume needs --output FILE (the run it continues)")
            if self.evaluate:
                raise ClassifierError("--resume does not go with --eval (its metrics need every record in one run)")
            if not self.resumable:
                raise ClassifierError("--resume needs input files: stdin and pipes cannot be read again")

    def _check_ray(self) -> None:
        if self.output is None:
            raise ClassifierError("--engine ray needs --output DIR (it writes a folder of Parquet or JSONL files)")
        if STDIN in self.sources:
            raise ClassifierError("--engine ray reads files, folders or globs, not stdin")
        if self.evaluate or self.resume:
            raise ClassifierError(f"{'--eval' if self.evaluate else '--resume'} goes with --engine local")
        self.output_format = self.output_format or "parquet"
        if self.output_format not in ("parquet", "jsonl"):
            raise ClassifierError("--engine ray writes --format parquet (the default) or jsonl")
        if self.output.exists() or self.output.is_symlink():
            raise ClassifierError(f"--output {self.output} exists; --engine ray writes a new folder (choose another)")
        check_paths(self.sources, self.written())

    def written(self) -> list[Written]:
        """Every path this run may write (edge.paths checks them against the inputs and each other)."""
        files = []
        if self.output is not None:
            files += [Written("--output", self.output)] if self.engine == "ray" else output_files("--output", self.output)
        if self.rejects is not None:
            files += output_files("--rejects", self.rejects)
        if self.eval_json is not None:
            files.append(Written("--eval-json", self.eval_json))
        return files

    @property
    def resumable(self) -> bool:
        """Every input is a regular file, so a later run can read it again and check it is unchanged."""
        return all(s != STDIN and os.path.isfile(s) for s in self.sources)
