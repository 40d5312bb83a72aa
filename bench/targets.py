"""Issue 12's targets, checked against one run's figures: met, not met, or not measured."""

from __future__ import annotations

from bench.common import table


def _cell(section: dict | None, **match) -> dict | None:
    for cell in (section or {}).get("cells", []):
        if all(cell.get(k) == v for k, v in match.items()):
            return cell
    return None


def check(report: dict) -> list[dict]:
    """One entry per target: what it asks, the figure, and whether it is met (None: not measured)."""
    out = []

    def add(target: str, figure: float | None, bound: float):
        out.append({"target": target, "figure": figure, "bound": bound,
                    "met": None if figure is None else figure >= bound})

    inst = report.get("instance")
    for query in ("list", "nested", "post"):
        for conns in (2, 4):
            cell = _cell(inst, query=query, connections=conns)
            add(f"instance ≥ PostGraphile: {query}, {conns} conns",
                cell and cell["instanceVsPostgraphile"], 1.0)
            add(f"instance ≥ psycopg2 server: {query}, {conns} conns",
                cell and cell["instanceVsPsycopg2"], 1.0)
    one, four = _cell(inst, query="nested", connections=1), _cell(inst, query="nested", connections=4)
    scaling = None
    if one and four and one["systems"]["instance"]["rps"]:
        scaling = round(four["systems"]["instance"]["rps"] / one["systems"]["instance"]["rps"], 2)
    add("instance nested query: 4 conns ≥ 1.6× 1 conn", scaling, 1.6)
    load = (report.get("load") or {}).get("systems", {})
    add("snapshot load ≥ 0.5× pg_dump (instance from PostgreSQL)",
        load.get("instance from PostgreSQL", {}).get("vsPgDump"), 0.5)
    for op in ("GET", "PATCH"):
        cell = _cell(report.get("api"), operation=op, connections=8)
        add(f"control plane {op} at 8 conns ≥ 0.5× bare Flask", cell and cell["vsBareFlask"], 0.5)
    fleet = report.get("fleet") or {}
    sizes = sorted({c["databases"] for c in fleet.get("cells", [])})
    for op in ("guard", "list"):
        for conns in sorted({c["connections"] for c in fleet.get("cells", [])}):
            small = _cell(fleet, operation=op, connections=conns, databases=sizes[0]) if sizes else None
            big = _cell(fleet, operation=op, connections=conns, databases=sizes[-1]) if sizes else None
            # "within 1.5× of 10": the time per request at the largest fleet at most 1.5× the smallest's,
            # i.e. its throughput at least 1/1.5 of it.
            add(f"{op} at {sizes[-1] if sizes else '?':,} databases within 1.5× of {sizes[0] if sizes else '?':,}"
                f" ({conns} conns)", big and small and big["vsSmallest"], round(1 / 1.5, 2))
    return out


def render(targets: list[dict]) -> str:
    """The measured targets (those of parts not run are left out)."""
    rows = [[t["target"], t["figure"], f"≥ {t['bound']}",
             "met" if t["met"] else "**not met**"] for t in targets if t["met"] is not None]
    return table("Issue 12's targets in this run", ["target", "figure", "needs", "verdict"], rows)
