"""The settings' fields, in groups: where the shares are and who reads them (``SourceSettings``),
how documents become chunks and vectors (``IndexingSettings``), the services a deployment runs
(``ServiceSettings``). ``workers.settings.Settings`` is all of them, read from the environment
and the TOML file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from index.permissions.ntfs import parse_sddl
from index.permissions.rules import AclRule
from ingest.smbfs import SmbLocation

DEFAULT_IGNORE = ["~$*", ".~lock.*#", "*.tmp", "*.part", "*.swp", ".DS_Store", "Thumbs.db", ".*"]
_SHARE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "shareindex"


_TOKEN = re.compile(r"^(everyone|(user|group):[^\s]+|(uid|gid):\d+)$")


def _check_tokens(tokens: list[str]) -> list[str]:
    for token in tokens:
        if not _TOKEN.match(token):
            raise ValueError(
                f"{token!r} is not a principal: use user:NAME, group:NAME, uid:N, gid:N or everyone"
            )
    return tokens


class AclRuleSetting(BaseModel):
    """A share rule: for a share (all shares if omitted) and an fnmatch glob of paths inside it."""

    model_config = ConfigDict(extra="forbid")
    share: str | None = None
    path: str = "*"
    grant: list[str] = Field(default_factory=list)
    restrict_to: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)

    _tokens = field_validator("grant", "restrict_to", "deny")(_check_tokens)

    def rule(self) -> AclRule:
        return AclRule(
            self.share, self.path, tuple(self.grant), tuple(self.restrict_to), tuple(self.deny)
        )


class SmbHostAccount(BaseModel):
    """The service account for one SMB server, where it is not ``smb_username``."""

    model_config = ConfigDict(extra="forbid")
    username: str
    password: SecretStr


class ApiToken(BaseModel):
    """A caller of the query API. Only the SHA-256 of the token is configured."""

    model_config = ConfigDict(extra="forbid")
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    user: str | None = None
    groups: list[str] = Field(default_factory=list)
    #: a trusted service: searches on behalf of the users whose principal it passes
    on_behalf: bool = False
    #: sees the full status (paths and reasons of failures), not only counts
    admin: bool = False
    #: an on-behalf token whose front end may name its user in a plain header
    #: (X-OpenWebUI-User-Email, X-LibreChat-User-Email, X-User-Email): only for a front end
    #: no one else can reach, since anyone holding the token could then ask as anyone
    plain_headers: bool = False


class SourceSettings(BaseModel):
    """The shares, the accounts that read them, the directory, the share permissions."""

    data_dir: Path = Field(default_factory=default_data_dir)
    #: share name -> root folder, or an SMB share: smb://HOST[:PORT]/SHARE[/FOLDER]
    shares: dict[str, Path | str] = Field(default_factory=dict)
    #: the service account for SMB shares (DOMAIN\user or user@realm): read and read
    #: permissions on the whole tree
    smb_username: str | None = None
    smb_password: SecretStr | None = None
    #: per server ("HOST" or "HOST:PORT"): another account than smb_username/smb_password
    smb_hosts: dict[str, SmbHostAccount] = Field(default_factory=dict)
    #: the directory users of SMB shares are resolved in (Active Directory or any LDAP server
    #: with objectSid and tokenGroups): ldaps://HOST, or ldap://HOST with StartTLS
    directory_url: str | None = None
    directory_username: str | None = None
    directory_password: SecretStr | None = None
    directory_ca_file: str | None = None
    directory_tls_verify: bool = True
    #: default: the directory's defaultNamingContext
    directory_base_dn: str | None = None
    #: group memberships are cached this long (a change in the directory applies after it)
    directory_cache_s: float = Field(default=300, ge=0)

    @field_validator(
        "smb_username",
        "smb_password",
        "directory_url",
        "directory_username",
        "directory_password",
        "directory_ca_file",
        "directory_base_dn",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """Compose and ConfigMaps pass an unused variable as an empty string: it means unset."""
        return None if value == "" else value

    #: SMB share name -> the share's own permissions as SDDL ("D:(A;;0x1200a9;;;S-1-5-21-...)"),
    #: used where the server does not give them to the service account
    share_permissions: dict[str, str] = Field(default_factory=dict)
    #: an SMB share whose permissions are known from neither the server nor share_permissions:
    #: "nothing" (none of it searchable) or "ntfs" (the files' NTFS permissions alone decide)
    share_permissions_missing: Literal["nothing", "ntfs"] = "nothing"

    @field_validator("shares")
    @classmethod
    def _check_shares(cls, shares: dict[str, Path | str]) -> dict[str, Path | str]:
        checked: dict[str, Path | str] = {}
        for name, root in shares.items():
            if not _SHARE_NAME.match(name):
                raise ValueError(f"share name {name!r} must be letters, digits, '_', '.', '-'")
            if str(root).startswith("smb://"):
                checked[name] = SmbLocation.parse(str(root)).url  # ValueError says what is wrong
                continue
            folder = Path(root).expanduser()
            if not folder.is_dir():
                raise ValueError(f"share {name!r}: {folder} is not a directory")
            checked[name] = folder.resolve()
        return checked

    @field_validator("share_permissions")
    @classmethod
    def _check_sddl(cls, value: dict[str, str]) -> dict[str, str]:
        for share, sddl in value.items():
            try:
                parse_sddl(sddl)
            except ValueError as exc:
                raise ValueError(f"share {share!r}: {exc}") from None
        return value


class IndexingSettings(BaseModel):
    """The embedding model, parsing and chunking, OCR and the VLM."""

    # embedding
    embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    embedding_device: str = "cpu"
    embedding_batch_size: int = Field(16, ge=1, le=4096)
    embedding_threads: int = Field(
        0, ge=0, description="torch threads, or ONNX runs side by side; 0 = all cores"
    )
    #: "torch" (any device), or on the CPU "onnx" / "onnx-int8" (ONNX Runtime; int8 = dynamic
    #: quantization) / "openvino" (extra [openvino]): exported once into model_dir. "auto":
    #: onnx-int8 on the CPU (about twice torch's speed, the same retrieval quality on the
    #: evaluation set), torch on a GPU and for a model the export cannot run faithfully
    embedding_backend: Literal["auto", "torch", "onnx", "onnx-int8", "openvino"] = "auto"
    #: where the exported models are kept; unset: <data_dir>/models
    model_dir: Path | None = None
    #: on CUDA: half precision and this batch size (a GPU wants far larger batches than a CPU)
    embedding_fp16: bool = True
    embedding_gpu_batch_size: int = Field(256, ge=1, le=4096)
    query_prefix: str = ""
    passage_prefix: str = ""
    #: CJK terms of the sparse vectors: "bigram" (no dependency) or "sudachi" (words; extra [ja])
    sparse_tokenizer: Literal["bigram", "sudachi"] = "bigram"
    #: a sentence-transformers cross-encoder (local path) that re-ranks the candidates; off if unset
    reranker_model: str | None = None
    rerank_candidates: int = Field(30, ge=1, le=500)

    # parsing and chunking
    chunk_max_tokens: int = Field(200, ge=16, le=8192)
    max_file_mb: float = Field(100, gt=0)
    max_uncompressed_mb: float = Field(1024, gt=0)
    parse_timeout_s: float = Field(120, gt=0)
    #: a message or an archive is parsed with its members in one go, within this many times
    #: parse_timeout_s
    container_timeout_factor: float = Field(10, ge=1)
    #: documents inside one message or archive, nested ones included
    max_archive_members: int = Field(10_000, ge=1)
    #: containers inside containers (a zip attached to a message is 2 deep)
    max_container_depth: int = Field(3, ge=1, le=10)
    parse_workers: int = Field(1, ge=1, le=64)
    #: a file this large is a large document: a text file is parsed in parts of part_mb, any
    #: format is embedded and written in slices of slice_chunks (readers keep its old version
    #: until the new one is complete), and it is bulk work (the service's bulk lane; the
    #: distributed mode's bulk queue) that small, recent changes overtake
    large_document_mb: float = Field(1.0, gt=0)
    part_mb: float = Field(1.0, gt=0)
    slice_chunks: int = Field(64, ge=1, le=65536)
    #: the embedded service: a pass with more documents than this is a bulk arrival (a copied
    #: folder, a first sync) and goes to the bulk lane, behind the next edit
    live_max_files: int = Field(32, ge=1)
    #: a reconcile that would delete more than this share of a share's documents at once (and
    #: at least delete_guard_min of them) holds the deletions until the files come back or an
    #: operator confirms (shareindex deletes --confirm SHARE); so does a share root that is gone
    #: or another folder or device than at the last pass. 1: only the root checks
    max_delete_fraction: float = Field(0.5, gt=0, le=1)
    delete_guard_min: int = Field(3, ge=1)
    #: a deleted document's points stay this many days, readable by nobody: the same content
    #: coming back under any path reuses their vectors instead of re-embedding. 0: removed at once
    keep_deleted_days: float = Field(7, ge=0)
    #: the embedded service verifies share, catalog and index this often (0: never), for the
    #: metric shareindex_verify_drift{kind}; no repair
    verify_interval_s: float = Field(0, ge=0)
    parse_memory_mb: int = Field(4096, ge=512)
    ocr_languages: str = "eng+jpn"
    #: the text layer of PDFs: "pdfium" (fast; paragraphs from line positions) or "pdfminer"
    #: (unstructured's fast strategy, about 25 times slower)
    pdf_text: Literal["pdfium", "pdfminer"] = "pdfium"
    # OCR and VLM
    ocr_enabled: bool = True
    #: share name -> Tesseract languages ("jpn+jpn_vert"); other shares use ocr_languages
    ocr_languages_by_share: dict[str, str] = Field(default_factory=dict)
    #: vertical Japanese: "auto" re-reads unsure pages with jpn_vert; "always"; "never"
    ocr_vertical: Literal["auto", "always", "never"] = "auto"
    ocr_dpi: int = Field(300, ge=72, le=600)
    #: scanned pages OCR'd per document; size parse_timeout_s for ~2 s per page
    ocr_max_pages: int = Field(300, ge=1)
    vlm_api_key: SecretStr | None = None
    #: the caption prompt; "{language}" becomes the document's language; unset: built-in
    vlm_prompt: str | None = None
    #: the layout mode's transcription prompt; unset: built-in
    vlm_page_prompt: str | None = None
    vlm_max_tokens: int = Field(512, ge=16, le=32768)
    vlm_page_max_tokens: int = Field(4096, ge=64, le=32768)
    vlm_max_image_side: int = Field(1024, ge=64, le=8192)
    vlm_max_image_pixels: int = Field(1024 * 1024, ge=4096)
    vlm_max_page_side: int = Field(1600, ge=256, le=8192)
    vlm_concurrency: int = Field(4, ge=1, le=256)
    vlm_timeout_s: float = Field(60, gt=0)
    vlm_retries: int = Field(3, ge=0, le=20)
    #: after an outage, VLM calls fail at once for this long (text is indexed, captions wait)
    vlm_cooldown_s: float = Field(30, ge=0)
    #: scanned pages to the VLM for a Markdown transcription instead of Tesseract (GPU path)
    vlm_layout_mode: bool = False
    #: the layout mode's pages: "scanned" (no text layer) or "all" (every PDF page: complex
    #: layouts whose text layer reads badly; a page keeps its text layer while the VLM is down)
    vlm_layout_pages: Literal["scanned", "all"] = "scanned"
    #: OCR the text inside figures of PDF, DOCX and PPTX (a pasted scan, a labelled chart)
    figure_ocr: bool = True
    figure_min_side_px: int = Field(64, ge=1)
    figure_min_area_ratio: float = Field(0.015, ge=0, le=1)
    ignore_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORE))

    @field_validator("embedding_device")
    @classmethod
    def _check_device(cls, device: str) -> str:
        if device != "cpu" and not re.match(r"^(cuda(:\d+)?|mps)$", device):
            raise ValueError(f"embedding_device {device!r} must be cpu, cuda, cuda:N or mps")
        return device


class ServiceSettings(BaseModel):
    """The services (unset: embedded), the embedded service, the distributed mode."""

    # services (unset = embedded)
    broker_url: str | None = None
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    catalog_url: str | None = None
    vlm_url: str | None = None
    vlm_model: str | None = None
    collection: str = "shareindex"
    #: the embedded index (no qdrant_url): "edge", Qdrant Edge in this process (the Qdrant
    #: engine: HNSW, payload indexes); "qdrant-local", qdrant-client's local mode (pure Python,
    #: brute force: a development tool, kept as a fallback and for tests)
    embedded_index: Literal["edge", "qdrant-local"] = "edge"
    #: the embedded index builds its HNSW index once this many points were written since the
    #: last build and writes paused for index_optimize_idle_s (0: never in the background)
    index_optimize_after: int = Field(default=20_000, ge=0)
    index_optimize_idle_s: float = Field(default=5.0, gt=0)

    # embedded service
    api_host: str = "127.0.0.1"
    api_port: int = Field(8765, ge=1, le=65535)
    #: the query API answers 413 to a larger request (URL and body), and 429 (Retry-After) to a
    #: caller (a token; an address without one) past api_rate_per_s (bursts of twice; 0: off)
    api_max_request_bytes: int = Field(65536, ge=1024)
    api_rate_per_s: float = Field(100, ge=0)
    debounce_s: float = Field(0.5, ge=0, description="quiet time before a changed file is read")
    write_settle_s: float = Field(
        3.0, ge=0, description="quiet time for a file written but never closed"
    )
    reconcile_interval_s: float = Field(
        600, gt=0, description="full comparison of shares and catalog"
    )
    catalog_wait_s: float = Field(
        300, ge=0, description="how long a service (run, watch, worker, api) waits at start for "
        "an unreachable catalog database, retrying, before it gives up (0: at once)",
    )  # fmt: skip
    polling_shares: list[str] = Field(
        default_factory=list, description="shares watched by polling (SMB/NFS)"
    )
    polling_interval_s: float = Field(1.0, gt=0)

    # distributed mode (Celery on the broker_url Redis)
    #: worker pool: prefork by default; Qdrant local mode needs threads (one process)
    worker_pool: Literal["prefork", "threads"] | None = None
    worker_concurrency: int = Field(0, ge=0, description="0: cores for prefork, 2 for threads")
    worker_metrics_port: int = Field(9808, ge=0, le=65535, description="0: no metrics server")
    worker_max_tasks_per_child: int = Field(200, ge=1)
    worker_max_memory_per_child_mb: int = Field(3072, ge=256)
    task_soft_time_limit_s: float = Field(900, gt=0)
    task_time_limit_s: float = Field(960, gt=0)
    #: Redis re-delivers an unacknowledged message after this long: longer than any task
    visibility_timeout_s: float = Field(3600, gt=0)
    #: a worker's claim on a document, renewed by its heartbeat; a killed worker's documents
    #: are dispatched again this long after its last heartbeat
    lease_s: float = Field(30, ge=1)
    #: a dispatched document waits this long in an empty queue before it is sent again
    requeue_after_s: float = Field(120, ge=1)
    #: how often the watcher looks for documents whose lease ran out
    requeue_interval_s: float = Field(15, gt=0)
    retry_backoff_s: float = Field(2, gt=0, description="first wait after a transient error")
    retry_backoff_max_s: float = Field(300, gt=0)
    max_retries: int = Field(10, ge=0, description="transient retries of one message")
    #: retries of a step that failed with an unexpected error (not bad input, not an outage)
    max_error_retries: int = Field(2, ge=0)
    #: an embed task takes along up to this many parsed documents waiting for the gpu queue
    #: (batches across documents; it stops at four batches' worth of chunks)
    embed_batch_documents: int = Field(32, ge=1, le=1000)
    #: a document whose worker died this many times is failed (a poison document)
    max_attempts: int = Field(5, ge=1)
    flower_port: int = Field(5555, ge=1, le=65535)
    flower_host: str = "127.0.0.1"
    #: "user:password"; required when Flower listens beyond the loopback address
    flower_basic_auth: SecretStr | None = None


class IdentitySettings(BaseModel):
    """Who signs the users in: the company's identity provider (OpenID Connect access tokens),
    and Open WebUI's forwarded user JWT."""

    #: the identity provider's issuer (the tokens' iss), e.g.
    #: https://login.microsoftonline.com/TENANT/v2.0 or https://sso.example/realms/corp
    oidc_issuer: str | None = None
    #: the audience the tokens must be for (aud): this API's client id or URI
    oidc_audience: str | None = None
    #: the key set (default: jwks_uri of the issuer's /.well-known/openid-configuration)
    oidc_jwks_url: str | None = None
    #: the claim that names the user (default: upn, then preferred_username, then email)
    oidc_user_claim: str | None = None
    #: the secret Open WebUI signs X-OpenWebUI-User-Jwt with (its WEBUI_SECRET_KEY)
    openwebui_jwt_secret: SecretStr | None = None
    #: the URL front ends reach the query API at, for the OAuth protected-resource metadata
    #: (default: the URL the request came in on)
    api_public_url: str | None = None

    @field_validator("oidc_issuer", "oidc_audience", "oidc_jwks_url", "oidc_user_claim",
                     "openwebui_jwt_secret", "api_public_url", mode="before")  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_oidc(self) -> IdentitySettings:
        if bool(self.oidc_issuer) != bool(self.oidc_audience):
            raise ValueError("oidc_issuer and oidc_audience go together: set both, or neither")
        return self

