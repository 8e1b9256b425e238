"""The MCP server at ``/mcp`` (the official ``mcp`` SDK, streamable HTTP, stateless, JSON
answers): tools ``search`` and ``neighbours``, each answering as the principal the request was
identified as (``workers.query.identity``), exactly what ``GET /search`` and the neighbours'
endpoint answer that principal.

Who asks is decided before the SDK sees the request: ``McpEndpoint`` identifies it and puts the
principal in the request's state, where the tools read it. A request that names nobody gets the
401 with the protected-resource metadata, as the MCP authorization spec says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from index.permissions.readers import Principal
from index.search import Searcher
from workers.query.identity import Refused
from workers.query.results import Sources, citation, result

INSTRUCTIONS = (
    "ShareIndex searches the company's file shares (documents, slides, spreadsheets, scanned "
    "forms, pictures) as the signed-in user: it finds only what that user may read. Cite each "
    "passage by its source, the path the user can open."
)


class SearchResult(BaseModel):
    content: str
    score: float
    share: str
    path: str
    #: what the person can open: \\server\share\path for an SMB share, the file's path otherwise
    source: str
    title: str
    modified: str | None = None
    version: int | None = None
    #: the document and the passage's index in it (what the neighbours tool takes)
    doc_id: str | None = None
    chunk: int | None = None


class SearchResults(BaseModel):
    results: list[SearchResult]


def _principal(ctx: Context) -> Principal:
    request = ctx.request_context.request
    principal = request.scope.get("state", {}).get("principal") if request is not None else None
    if not isinstance(principal, Principal):  # McpEndpoint always sets it: never anonymous
        raise RuntimeError("request not identified")
    return principal


def _answer(items: list[dict[str, Any]]) -> CallToolResult:
    text = "\n\n".join(citation(n, item) for n, item in enumerate(items, 1)) or "No results."
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content={"results": items})  # fmt: skip


def mcp_server(searcher: Searcher, sources: Sources) -> MCPServer:
    server = MCPServer("ShareIndex", instructions=INSTRUCTIONS)

    @server.tool(
        name="search",
        description="Search the company's file shares for passages about the query, as the "
        "signed-in user. Returns the best passages, each with its source (the file to open), "
        "title, modification time and score.",
    )
    def search(
        query: Annotated[str, Field(min_length=1, max_length=4000, description="what to find")],
        ctx: Context,
        k: Annotated[int, Field(ge=1, le=50, description="how many passages")] = 5,
        share: Annotated[str | None, Field(description="only this share")] = None,
        mode: Annotated[Literal["hybrid", "dense", "sparse"],
                        Field(description="hybrid (default), dense or sparse")] = "hybrid",  # fmt: skip
    ) -> Annotated[CallToolResult, SearchResults]:
        hits = searcher.search(query, _principal(ctx), k=k, mode=mode,
                               shares=(share,) if share else ())  # fmt: skip
        return _answer([result(h, sources) for h in hits])

    @server.tool(
        name="neighbours",
        description="The passages around a search result in its file (the same version), to "
        "read more of it: give the result's doc_id and chunk.",
    )
    def neighbours(
        doc_id: Annotated[str, Field(min_length=1, max_length=64)],
        chunk: Annotated[int, Field(ge=0, description="the result's chunk")],
        ctx: Context,
        before: Annotated[int, Field(ge=0, le=20)] = 1,
        after: Annotated[int, Field(ge=0, le=20)] = 1,
    ) -> Annotated[CallToolResult, SearchResults]:
        wanted = list(range(max(0, chunk - before), chunk + after + 1))
        hits = searcher.store.document_chunks(doc_id, _principal(ctx), wanted)
        return _answer([result(h, sources) for h in hits])

    return server


class McpEndpoint:
    """The ASGI endpoint at /mcp: identifies the request, then hands it to the SDK."""

    def __init__(
        self,
        server: MCPServer,
        identify: Callable[[Request], Principal],
        refuse: Callable[[Request, Refused], JSONResponse],
    ) -> None:
        self.server = server
        self.identify = identify
        self.refuse = refuse
        # stateless and JSON: any process of the API answers any request, without a session;
        # no DNS-rebinding check: every request carries a bearer token a page cannot forge
        server.streamable_http_app(
            stateless_http=True, json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:  # the directory is asked over the network: not on the event loop
            principal = await run_in_threadpool(self.identify, request)
        except Refused as refused:
            await self.refuse(request, refused)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.server.session_manager.handle_request(scope, receive, send)
