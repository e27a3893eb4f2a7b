"""Who a validator is: one row per (chain, consensus address), created on first sight.

Votes, commits and sets all name validators by address; this is the one place that turns addresses
into the ids the tables store, creating the unknown ones (by address alone: the indexer fills in
the key and the moniker later)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .models import Validator
from .protocol.fields import MAX_VALIDATORS

log = logging.getLogger("ctop.identity")

# Validators a chain may accumulate from events alone (twice CometBFT's cap on a set): past it,
# addresses nobody indexed are not created, so an endpoint inventing addresses cannot grow the
# validator table (and every vote under them) without end.
MAX_VALIDATORS_PER_CHAIN = 2 * MAX_VALIDATORS


def validator_ids(chain_id: int, addresses: Iterable[str], *, cap: int | None = None) -> dict[str, int]:
    """Validator ids by address, creating the unknown ones (race-safe: ON CONFLICT DO NOTHING).

    cap: the most validators the chain may have; unknown addresses past it are not created, are
    logged, and are missing from the result (the caller drops what names them)."""
    wanted = set(addresses)
    known = dict(Validator.objects.filter(chain_id=chain_id, address__in=wanted).values_list("address", "id"))
    new = sorted(wanted - set(known))
    if not new:
        return known
    if cap is not None:
        room = cap - Validator.objects.filter(chain_id=chain_id).count()
        if room < len(new):
            log.error(
                "chain id %s: %d address(es) nobody indexed, and the chain has %d validators already: "
                "not stored (an endpoint inventing validators?)",
                chain_id,
                len(new) - max(room, 0),
                cap - room,
            )
            new = new[: max(room, 0)]
    Validator.objects.bulk_create([Validator(chain_id=chain_id, address=a) for a in new], ignore_conflicts=True)
    known.update(Validator.objects.filter(chain_id=chain_id, address__in=new).values_list("address", "id"))
    return known
