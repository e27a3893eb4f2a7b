"""The simulator's Cosmos SDK REST API (LCD), served on the RPC port: staking validators (with
monikers, statuses and tokens), slashing params and signing infos, paginated like a real LCD
(`pagination.key` / `next_key`). The slashing figures follow the chain's votes (SlashingBook), so
the demo shows jail risk rising, a jailing, and the unjailing after it. A mixin of SimNode."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

from aiohttp import web

from consensus.protocol.fields import format_time
from consensus.protocol.keys import bech32_encode

if TYPE_CHECKING:
    from .chain import SimChain, SimValidator

PAGE = 100  # the LCD's default page size


class RESTRoutes:
    chain: SimChain

    def add_rest_routes(self, app: web.Application) -> None:
        app.router.add_get("/cosmos/staking/v1beta1/validators", self.staking_validators)
        app.router.add_get("/cosmos/slashing/v1beta1/params", self.slashing_params)
        app.router.add_get("/cosmos/slashing/v1beta1/signing_infos", self.signing_infos)

    def _everyone(self) -> list[SimValidator]:
        """Every validator the chain ever had (the genesis ones and any that joined), by index."""
        seen = {v.genesis_index: v for _, vals in self.chain._sets for v in vals}
        return [seen[i] for i in sorted(seen)]

    @staticmethod
    def _page(request: web.Request, items: list) -> tuple[list, str | None]:
        try:
            limit = max(1, min(int(request.query.get("pagination.limit", PAGE)), 1000))
            key = request.query.get("pagination.key", "")
            offset = int(base64.b64decode(key)) if key else 0
        except ValueError:
            raise web.HTTPBadRequest(text='{"code":3,"message":"invalid pagination","details":[]}') from None
        rest = items[offset + limit :]
        next_key = base64.b64encode(str(offset + limit).encode()).decode() if rest else None
        return items[offset : offset + limit], next_key

    @staticmethod
    def _json(doc: dict) -> web.Response:
        return web.Response(text=json.dumps(doc), content_type="application/json")

    def _moniker(self, v: SimValidator) -> str:
        return self.chain.scenario.monikers.get(v.genesis_index, f"sim-validator-{v.genesis_index}")

    async def staking_validators(self, request: web.Request) -> web.Response:
        book = self.chain.slashing
        current = {v.genesis_index: v.power for v in self.chain.validator_set(max(self.chain.latest_height, 1))}
        items = []
        for v in self._everyone():
            jailed = book.jailed(v.genesis_index)
            bonded = v.genesis_index in current and not jailed
            items.append(
                {
                    "operator_address": bech32_encode("cosmosvaloper", v.address),
                    "consensus_pubkey": {
                        "@type": "/cosmos.crypto.ed25519.PubKey",
                        "key": base64.b64encode(v.pub_key).decode(),
                    },
                    "jailed": jailed,
                    "status": "BOND_STATUS_BONDED" if bonded else "BOND_STATUS_UNBONDING",
                    "tokens": str(current.get(v.genesis_index, v.power) * 1_000_000),
                    "delegator_shares": f"{current.get(v.genesis_index, v.power) * 1_000_000}.000000000000000000",
                    "description": {"moniker": self._moniker(v), "identity": "", "website": "", "details": ""},
                    "commission": {
                        "commission_rates": {
                            "rate": "0.050000000000000000",
                            "max_rate": "0.200000000000000000",
                            "max_change_rate": "0.010000000000000000",
                        }
                    },
                }
            )
        page, next_key = self._page(request, items)
        return self._json({"validators": page, "pagination": {"next_key": next_key, "total": str(len(items))}})

    async def slashing_params(self, request: web.Request) -> web.Response:
        rule = self.chain.slashing.rule
        return self._json(
            {
                "params": {
                    "signed_blocks_window": str(self.chain.slashing.window),
                    "min_signed_per_window": f"{rule.min_signed:.18f}",
                    "downtime_jail_duration": f"{rule.jail_seconds:g}s",
                    "slash_fraction_double_sign": "0.050000000000000000",
                    "slash_fraction_downtime": "0.000100000000000000",
                }
            }
        )

    async def signing_infos(self, request: web.Request) -> web.Response:
        book = self.chain.slashing
        items = []
        for v in self._everyone():
            until = book.last_jailed_until.get(v.genesis_index)
            items.append(
                {
                    "address": bech32_encode("cosmosvalcons", v.address),
                    "start_height": "0",
                    "index_offset": str(max(self.chain.latest_height, 0)),
                    "jailed_until": format_time(until) if until else "1970-01-01T00:00:00Z",
                    "tombstoned": False,
                    "missed_blocks_counter": str(book.counter(v.genesis_index)),
                }
            )
        page, next_key = self._page(request, items)
        return self._json({"info": page, "pagination": {"next_key": next_key, "total": str(len(items))}})
