"""results.json / results.md / results.png from one run per payload encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: encoder name -> that run's results (``dataclasses.asdict`` of ``Results``)
Runs = dict[str, dict[str, Any]]


def write(runs: Runs, out_dir: Path) -> None:
    (out_dir / "results.json").write_text(json.dumps(runs, indent=2) + "\n")
    (out_dir / "results.md").write_text(markdown(runs))
    _chart(runs, out_dir / "results.png")


def markdown(runs: Runs) -> str:
    first = next(iter(runs.values()))
    m = first["machine"]
    lines = [
        f"Measured {m['date']} on {m['cpus']} CPUs ({m['platform']}), Python {m['python']}, "
        f"redis-py {m.get('redis_py', '?')}, {m['server']}{_factory(m)}; one run per payload "
        f"encoder ({', '.join(runs)}), best of {first['sizes']['rounds']} alternating rounds "
        "each.",
        "",
        "| ratio | " + " | ".join(runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    names = list(dict.fromkeys(k for run in runs.values() for k in run["ratios"]))
    for name in names:
        cells = [_number(run["ratios"].get(name), ".2f") for run in runs.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for encoder, run in runs.items():
        lines += ["", f"### payload encoder: {encoder}", ""]
        lines += _tables(run)
    return "\n".join(lines) + "\n"


def _tables(run: dict[str, Any]) -> list[str]:
    lines = ["| bulk method | commands/s | records/s |", "|---|---:|---:|"]
    for name, row in run["bulk"].items():
        lines.append(
            f"| {name} | {row['commands_per_s']:,.0f} | {_number(row.get('records_per_s'))} |"
        )
    lines += _busy_table(run.get("busy") or {})
    names = list(dict.fromkeys(k for row in run["concurrency"].values() for k in row))
    lines += ["", "| concurrent handlers | " + " | ".join(names) + " |"]
    lines.append("|---:|" + "---:|" * len(names))
    for concurrency, row in run["concurrency"].items():
        cells = [_number(row.get(name)) for name in names]
        lines.append(f"| {concurrency} | " + " | ".join(cells) + " |")
    lines += ["", "(handlers: records/s, each handler does delay, sleep(0), queue)", ""]
    lines += ["| consumer | records/s |", "|---|---:|"]
    lines += [f"| {k} | {v:,.0f} |" for k, v in run["consumer"].items()]
    lines += ["", "| single delay latency | µs |", "|---|---:|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in run["latency_us"].items()]
    lines += _http_table(run.get("http") or {})
    if run["memory_bytes_per_record"]:
        lines += ["", "| bulk peak memory (1M records) | bytes/record |", "|---|---:|"]
        lines += [f"| {k} | {v:.0f} |" for k, v in run["memory_bytes_per_record"].items()]
    return lines


def _factory(machine: dict[str, Any]) -> str:
    factory = machine.get("task_factory", "default")
    return "" if factory == "default" else f", asyncio.{factory}_task_factory"


def _busy_table(busy: dict[str, Any]) -> list[str]:
    if not busy:
        return []
    return [
        "",
        f"| bulk() of {busy['records']:,} records (median of {busy['rounds']}) | records/s | "
        "server busy | server-bound limit, records/s | client µs/record | server µs/record |",
        "|---|---:|---:|---:|---:|---:|",
        f"| aioredstream | {busy['records_per_s']:,.0f} | {busy['server_busy']:.0%} | "
        f"{busy['server_bound_records_per_s']:,.0f} | {busy['client_us_per_record']:.2f} | "
        f"{busy['server_us_per_record']:.2f} |",
        "",
        "(server busy: the server's CPU time (INFO cpu) / wall time; server-bound limit: "
        "records / the server's CPU time; client: the process's CPU time per record)",
    ]


def _http_table(http: dict[str, Any]) -> list[str]:
    if not http:
        return []
    if "skipped" in http:
        return ["", f"HTTP benchmark skipped: {http['skipped']}"]
    lines = [
        "",
        f"PUT /users/{{id}} under wrk: {http['server']}; median of {http['rounds']} "
        f"alternating rounds of {http['duration_s']} s",
        "",
        "| connections | handler | requests/s | p50 ms | p99 ms | CPU µs/request | "
        "extra µs/request | extra µs/request from rps | errors | streams check |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for connections, rows in http["connections"].items():
        for variant, row in rows.items():
            bare = variant == "bare"
            extra = "-" if bare else f"{row['extra_us_per_request']:.0f}"
            from_rps = "-" if bare else f"{row['extra_us_per_request_from_rps']:.0f}"
            lines.append(
                f"| {connections} | {variant} | {row['rps']:,.0f} | {row['p50_us'] / 1000:.1f} | "
                f"{row['p99_us'] / 1000:.1f} | {row['cpu_us_per_request']:.0f} | {extra} | "
                f"{from_rps} | {row['errors']} | {'ok' if row['consistent'] else 'MISMATCH'} |"
            )
    lines += [
        "",
        "(CPU µs/request: the uvicorn process's CPU time (all threads) per completed request; "
        "extra: that minus the bare handler's; from rps: 1e6/rps - 1e6/rps of the bare "
        "handler; streams check: queue stream length = handlers completed >= wrk's "
        "successful requests, delay stream empty, after every run)",
    ]
    return lines


def _number(value: float | str | None, spec: str = ",.0f") -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else format(value, spec)


def _chart(runs: Runs, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    # one panel above the other (the docs show the chart at the width of a page of text),
    # each laid out on its own so the bar labels do not narrow the line chart
    fig = plt.figure(figsize=(8, 9.5), layout="constrained")
    grid = fig.add_gridspec(2, 1)
    left = fig.add_subfigure(grid[0]).subplots()
    right = fig.add_subfigure(grid[1]).subplots()
    thousands = FuncFormatter(lambda value, _: f"{value / 1000:,.0f}k" if value else "0")
    names = list(dict.fromkeys(k for run in runs.values() for k in run["bulk"]))
    height = 0.8 / len(runs)
    for number, (encoder, run) in enumerate(runs.items()):
        values = [run["bulk"].get(n, {}).get("commands_per_s", 0.0) for n in names]
        offsets = [i + number * height for i in range(len(names))]
        left.barh(offsets, values, height=height, label=f"payloads: {encoder}")
    left.set_yticks([i + height * (len(runs) - 1) / 2 for i in range(len(names))], names)
    left.xaxis.set_major_formatter(thousands)
    left.set_xlabel("Redis commands/s (higher is better)")
    left.set_title("Bulk throughput per method")
    left.legend(fontsize=8)
    left.invert_yaxis()
    run = next(iter(runs.values()))
    levels = list(run["concurrency"])
    for name in dict.fromkeys(k for row in run["concurrency"].values() for k in row):
        points = [
            (int(c), v) for c in levels if isinstance(v := run["concurrency"][c].get(name), float)
        ]
        if points:
            right.plot(*zip(*points, strict=True), marker="o", label=name)
    right.set_xscale("log")
    right.set_xticks([int(c) for c in levels], [str(c) for c in levels])
    right.minorticks_off()
    right.set_xlabel("concurrent handlers")
    right.yaxis.set_major_formatter(thousands)
    right.set_ylabel("records/s")
    right.set_title(f"Handlers: throughput vs concurrency (payloads: {next(iter(runs))})")
    right.legend(fontsize=8)
    m = run["machine"]
    fig.suptitle(
        f"{m['date']}, {m['cpus']} CPUs, Python {m['python']}, redis-py {m.get('redis_py', '?')}, "
        f"{m['server']}{_factory(m)}",
        fontsize=9,
    )
    fig.savefig(path, dpi=150)
    plt.close(fig)
