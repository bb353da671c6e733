"""A run's log: log.jsonl (one JSON object per record), log.csv (with ``csv``), and the
one-line rendering of a record for terminals and log files.

Records: ``{"message": ...}``; a training line ``{"step", "loss", "losses": {term: value},
"lr", "it_s", "eta_s", "data_wait", "epoch"}`` (with ``d_loss``, ``d_real``, ``d_fake`` in GAN
mode, ``grad_norm`` with a gradient clip); a validation ``{"step", "val_psnr", "val", "best_psnr",
"best_step", "val_seconds"}``.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Callable, Optional


class RunLog:
    """Where a run's records go: ``on_log``, and with a ``run_dir`` (rank 0) log.jsonl, and log.csv
    too with ``csv_terms`` (the loss terms, its columns). Call it with a record; a context
    manager that closes the files."""

    def __init__(self, on_log: Callable[[dict[str, Any]], None], run_dir: Optional[Path] = None, *,
                 csv_terms: Optional[list[str]] = None, gan: bool = False):
        self.on_log = on_log
        self.file = open(run_dir / "log.jsonl", "a") if run_dir is not None else None
        self.csv = CsvLog(run_dir / "log.csv", csv_terms, gan) if run_dir is not None and csv_terms is not None else None

    def __call__(self, record: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.csv is not None:
            self.csv.write(record)
        self.on_log(record)

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()
        if self.csv is not None:
            self.csv.close()


class CsvLog:
    """log.csv: one row per training log line and validation, fixed columns (appends on resume)."""

    def __init__(self, path: Path, loss_terms: list[str], gan: bool):
        self.columns = ["step", "loss", *[f"loss_{t}" for t in loss_terms]]
        if gan:
            self.columns += ["d_loss", "d_real", "d_fake"]
        self.columns += ["lr", "it_s", "eta_s", "val_psnr"]
        new = not path.is_file()
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=self.columns, extrasaction="ignore")
        if new:
            self.writer.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        if "loss" not in record and "val_psnr" not in record:
            return
        row = dict(record)
        row.update({f"loss_{k}": v for k, v in record.get("losses", {}).items()})
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def print_record(record: dict[str, Any]) -> None:
    """Plain one-line rendering of a log record (for logs and non-terminal output)."""
    if "val_psnr" in record:
        print(f"step {record['step']:>7}  val PSNR {record['val_psnr']:.3f} dB (best {record['best_psnr']:.3f} "
              f"at {record['best_step']})  {record['val_seconds']:.1f}s", flush=True)
    elif "loss" in record:
        terms = record.get("losses", {})
        detail = f" ({' '.join(f'{k} {v:.4g}' for k, v in terms.items())})" if len(terms) > 1 else ""
        gan = f"  D {record['d_loss']:.4f}" if "d_loss" in record else ""
        print(f"step {record['step']:>7}  loss {record['loss']:.5f}{detail}{gan}  lr {record['lr']:.3g}  "
              f"{record['it_s']:.2f} it/s  ETA {format_seconds(record.get('eta_s'))}  "
              f"data wait {record['data_wait']:.0%}  epoch {record['epoch']:.2f}", flush=True)
    else:
        print(record.get("message", json.dumps(record)), flush=True)


def quiet(record: dict[str, Any]) -> None:
    """``on_log`` for the ranks of a data-parallel run other than 0: they say nothing."""
    return None
