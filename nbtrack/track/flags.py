"""What a run's sections say a person should notice: the data's state, what the run produced, the
run card's warnings. Pure functions of the snapshot's sections."""

from __future__ import annotations

from typing import Any

from nbtrack.models import Section


def data_status(sections: dict[str, Section]) -> str:
    """The worst workspace status among the DVC outputs: missing, modified, unknown or clean.

    A data section that was not taken gives its own status (``absent``, ``error``).

    Example:
        >>> data_status({"data": Section("data", data={"summary": {"clean": 2, "modified": 1}})})
        'modified'
        >>> data_status({})
        'absent'
    """
    data = sections.get("data")
    if data is None or data.status != "ok":
        return "absent" if data is None else data.status
    summary = data.data.get("summary") or {}
    return next((s for s in ("missing", "modified", "unknown") if summary.get(s)), "clean")


def _output_states(section: Section | None) -> dict[str, str | None]:
    """Each DVC output's workspace content: its hash, or None when missing or unknown."""
    if section is None or section.status != "ok":
        return {}
    states: dict[str, str | None] = {}
    for out in section.data.get("outputs", []):
        status = out.get("status")
        states[out["path"]] = (
            out["hash"] if status == "clean" else out.get("workspace_hash") if status == "modified" else None
        )
    return states


def produced_outputs(before: Section | None, after: Section | None) -> list[dict[str, Any]]:
    """DVC outputs whose workspace content changed during the run: what the run produced.

    Example:
        >>> a = Section("data", data={"outputs": [{"path": "m.pkl", "hash": "1", "status": "missing"}]})
        >>> b = Section("data", data={"outputs": [{"path": "m.pkl", "hash": "1", "status": "modified",
        ...                                        "workspace_hash": "2", "hash_name": "md5"}]})
        >>> produced_outputs(a, b)
        [{'path': 'm.pkl', 'hash_name': 'md5', 'before': None, 'after': '2'}]
    """
    start, end = _output_states(before), _output_states(after)
    names = {o["path"]: o.get("hash_name") for o in (after.data.get("outputs", []) if after else [])}
    return [
        {"path": path, "hash_name": names.get(path), "before": start.get(path), "after": end[path]}
        for path in sorted(end)
        if end[path] is not None and end[path] != start.get(path)
    ]


def run_flags(sections: dict[str, Section]) -> list[str]:
    """The run card's warnings: out-of-order execution, unsaved edits, missing sections, dirty data.

    Example:
        >>> nb = {"out_of_order": True, "out_of_order_reasons": ["cell 3 ran first"]}
        >>> run_flags({"notebook": Section("notebook", data=nb)})
        ['executed out of order: cell 3 ran first']
    """
    flags = []
    nb = sections.get("notebook")
    if nb is not None and nb.data.get("out_of_order"):
        flags.append("executed out of order: " + "; ".join(nb.data.get("out_of_order_reasons", [])[:3]))
    live = nb.data.get("live") if nb is not None else None
    if isinstance(live, dict) and live.get("unsaved_edits"):
        flags.append("notebook had unsaved edits in the editor: " + "; ".join(live.get("differences", [])))
    for name, section in sections.items():
        if name != "parameters":  # why a section is missing, and what it left out (caps, DVC files)
            flags.extend(f"{name}: {note}" for note in section.notes())
    status = data_status(sections)
    if status in ("modified", "missing"):
        flags.append(f"data {status} (not committed to DVC)")
    return flags
