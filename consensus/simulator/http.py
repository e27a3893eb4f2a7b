"""The simulator's HTTP RPC: /health, /status, /validators (paginated exactly like a real node,
including its out-of-range error), /block, /blockchain and /commit, with the real error replies. A mixin of
SimNode, which provides the chain, the port, the chain-id it reports and its stall state."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from aiohttp import web

from consensus.protocol import encode

if TYPE_CHECKING:
    from .chain import SimChain


class HTTPRoutes:
    chain: SimChain
    chain_id: str | None
    moniker: str
    port: int
    fail_validators_page: int | None
    _frozen_height: int | None

    def is_stalled(self) -> bool:  # pragma: no cover - provided by SimNode
        raise NotImplementedError

    def _reply(self, body: str, status: int = 200) -> web.Response:
        return web.Response(text=body, status=status, content_type="application/json")

    def _error(self, data: str) -> web.Response:
        return self._reply(encode.http_error(data), status=500)

    def _latest(self) -> int:
        self.is_stalled()
        return self._frozen_height if self._frozen_height is not None else self.chain.latest_height

    def _height_arg(self, request: web.Request, default: int, *, uncommitted: bool = False) -> int | web.Response:
        """`height` from the query. uncommitted: the height in progress is allowed too, as CometBFT's
        /validators allows it (its set is known once the previous height committed)."""
        raw = request.query.get("height", "").strip('"')
        if not raw:
            return default
        try:
            h = int(raw)
        except ValueError:
            return self._error(f"error converting http params to arguments: invalid height {raw!r}")
        latest = self._latest() + (1 if uncommitted else 0)
        if h <= 0:
            return self._error("height must be greater than zero")
        if h > max(latest, 1):
            return self._error(f"height {h} must be less than or equal to the current blockchain height {latest}")
        if h < self.chain.earliest_height and h not in self.chain.blocks:
            return self._error(f"height {h} is not available, lowest height is {self.chain.earliest_height}")
        return h

    async def health(self, request: web.Request) -> web.Response:
        return self._reply(encode.http_result({}))

    async def status(self, request: web.Request) -> web.Response:
        latest = self._latest()
        chain = self.chain
        rec = chain.blocks.get(latest)
        first = chain.blocks.get(chain.earliest_height)
        zero = bytes(32)
        v = chain.validator_set(max(latest, 1))[0]
        return self._reply(
            encode.status_reply(
                chain_id=self.chain_id or chain.chain_id,
                moniker=self.moniker,
                node_id=f"{self.port:040x}",
                listen_port=self.port,
                latest_hash=rec.block_hash if rec else zero,
                latest_height=latest,
                latest_time=rec.time if rec else chain.genesis_time,
                earliest_hash=first.block_hash if first else zero,
                earliest_time=first.time if first else chain.genesis_time,
                validator=v.info(),
            )
        )

    async def validators(self, request: web.Request) -> web.Response:
        h = self._height_arg(request, max(self._latest(), 1), uncommitted=True)
        if isinstance(h, web.Response):
            return h
        try:
            page = int(request.query.get("page", "1").strip('"') or 1)
            per_page = int(request.query.get("per_page", "30").strip('"') or 30)
        except ValueError:
            return self._error("error converting http params to arguments: invalid page or per_page")
        per_page = 30 if per_page <= 0 else min(per_page, 100)
        vals = self.chain.validator_set(h)
        pages = max(1, math.ceil(len(vals) / per_page))
        if page < 1 or page > pages:
            return self._error(f"page should be within [1, {pages}] range, given {page}")
        if page == self.fail_validators_page:
            return self._error("simulated failure reading the validator set")
        chunk = vals[(page - 1) * per_page : page * per_page]
        return self._reply(encode.validators_reply(h, [v.info() for v in chunk], len(vals)))

    def _header(self, h: int) -> dict:
        rec = self.chain.blocks[h]
        if rec.header is not None:
            return rec.header  # the header its hash was made of
        prev = self.chain.blocks.get(h - 1)
        return encode.header_doc(
            chain_id=self.chain.chain_id,
            height=h,
            time=rec.time,
            last_block_hash=prev.block_hash if prev else None,
            proposer=rec.proposer,
        )

    async def block(self, request: web.Request) -> web.Response:
        h = self._height_arg(request, self._latest())
        if isinstance(h, web.Response):
            return h
        if h not in self.chain.blocks:
            return self._error(f"height {h} is not available")
        prev = self.chain.blocks.get(h - 1)
        return self._reply(
            encode.block_reply(
                block_hash=self.chain.blocks[h].block_hash,
                header=self._header(h),
                last_commit=prev.commit if prev else None,
            )
        )

    async def blockchain(self, request: web.Request) -> web.Response:
        """Block metas, newest first, at most 20: the latest 20 of [minHeight, maxHeight] after both
        are clamped to what the node has, as CometBFT's filterMinMax does."""
        latest = self._latest()
        try:
            lo = int(request.query.get("minHeight", "1").strip('"') or 1)
            hi = int(request.query.get("maxHeight", "0").strip('"') or 0)
        except ValueError:
            return self._error("error converting http params to arguments: invalid minHeight or maxHeight")
        if lo < 0 or hi < 0:
            return self._error("heights must be non-negative")
        base = max(1, self.chain.earliest_height)
        lo = max(lo, base)
        hi = latest if hi == 0 else min(hi, latest)
        lo = max(lo, hi - 20 + 1)
        if lo > hi:
            return self._error(f"min height {lo} can't be greater than max height {hi}")
        metas = []
        for h in range(hi, lo - 1, -1):
            rec = self.chain.blocks.get(h)
            if rec is not None:  # the simulator keeps its latest blocks only
                metas.append((rec.block_hash, self._header(h), rec.txs, 600 + 250 * rec.txs))
        return self._reply(encode.blockchain_reply(latest, metas))

    async def commit(self, request: web.Request) -> web.Response:
        latest = self._latest()
        h = self._height_arg(request, latest)
        if isinstance(h, web.Response):
            return h
        if h not in self.chain.blocks:
            return self._error(f"height {h} is not available")
        return self._reply(
            encode.commit_reply(header=self._header(h), commit=self.chain.blocks[h].commit, canonical=h < latest)
        )
