"""Queue and task names: the contract between the watcher, the workers and the deployment
(KEDA scales the workers on the length of these Redis lists)."""

from __future__ import annotations

#: parsing, CPU OCR and planning (what a change means for the index)
CPU_QUEUE = "cpu"
#: embedding and VLM work: captions, and in the VLM layout mode the parsing of documents whose
#: pages go to the VLM (a cpu worker hands them over: PagesNeedGpu)
GPU_QUEUE = "gpu"
#: bulk work, so that it never occupies every worker: a large document end to end (parsed in
#: parts, embedded and written in slices: LARGE_TASK), and the parsing of messages, archives
#: and bulk arrivals (a pass with more than live_max_files documents: a copied folder, a first
#: sync). Workers of their own consume it; cpu and gpu workers stay free for small changes
BULK_QUEUE = "bulk"
QUEUES = (CPU_QUEUE, GPU_QUEUE, BULK_QUEUE)

#: compare a share (or some of its paths) with the catalog; dispatch what must be processed
PLAN_TASK = "shareindex.plan"
#: read, parse and chunk one document; its result is staged in the catalog
PARSE_TASK = "shareindex.parse"
#: embed one staged document and commit it to the index
EMBED_TASK = "shareindex.embed"
#: a large document, parsed in parts, embedded and written in slices by one bulk worker
LARGE_TASK = "shareindex.large"

ROUTES = {
    PLAN_TASK: {"queue": CPU_QUEUE},
    PARSE_TASK: {"queue": CPU_QUEUE},
    EMBED_TASK: {"queue": GPU_QUEUE},
    LARGE_TASK: {"queue": BULK_QUEUE},
}


def parse_queues(spec: str) -> list[str]:
    """``cpu,gpu`` from the command line; an unknown name is a configuration error."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUES]
    if unknown or not names:
        raise ValueError(
            f"unknown queue {', '.join(unknown) if unknown else repr(spec)}: "
            f"choose from {', '.join(QUEUES)}"
        )
    return names
