"""Converts documents through a running LibreOffice, one request per line; run by the system
Python (``python3-uno``), never imported by ShareIndex (``ingest.stages.office`` starts it).

    python3 uno_worker.py PIPE_NAME      # soffice listens on --accept=pipe,name=PIPE_NAME;urp;

Each stdin line is ``{"in": PATH, "out": PATH, "filter": NAME}``; each answer on stdout is
``{"ok": true}`` or ``{"ok": false, "error": REASON}``. Documents are loaded hidden, read-only,
with macros never executed and links never updated. When LibreOffice dies, this process exits
(its parent starts both again).
"""

import json
import sys
import time
from typing import Any

import uno
from com.sun.star.beans import PropertyValue

_NEVER_EXECUTE = 0  # com.sun.star.document.MacroExecMode.NEVER_EXECUTE
_NO_UPDATE = 0  # com.sun.star.document.UpdateDocMode.NO_UPDATE


def _props(**values: object) -> tuple:
    out = []
    for name, value in values.items():
        prop = PropertyValue()
        prop.Name, prop.Value = name, value
        out.append(prop)
    return tuple(out)


def _desktop(pipe: str, wait_s: float = 60.0) -> Any:
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext(
        "com.sun.star.bridge.UnoUrlResolver", local
    )
    deadline = time.monotonic() + wait_s
    while True:
        try:
            ctx = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)


def _convert(desktop: Any, request: dict) -> dict:
    load = _props(Hidden=True, ReadOnly=True, MacroExecutionMode=_NEVER_EXECUTE,
                  UpdateDocMode=_NO_UPDATE, RepairPackage=False)  # fmt: skip
    url = uno.systemPathToFileUrl(request["in"])
    doc = desktop.loadComponentFromURL(url, "_blank", 0, load)
    if doc is None:
        return {"ok": False, "error": "LibreOffice could not load it"}
    try:
        doc.storeToURL(
            uno.systemPathToFileUrl(request["out"]), _props(FilterName=request["filter"])
        )
    finally:
        doc.close(True)
    return {"ok": True}


def main() -> None:
    desktop = _desktop(sys.argv[1])
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    for line in sys.stdin:
        try:
            answer = _convert(desktop, json.loads(line))
        except Exception as exc:  # LibreOffice's own reason (IOException, ...), or its death
            name = type(exc).__name__
            message = str(getattr(exc, "Message", "") or exc)
            if "DisposedException" in name or "bridge disposed" in message:
                sys.exit(3)  # the connection is gone: LibreOffice died under the document
            answer = {"ok": False, "error": f"{name}: {message}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
