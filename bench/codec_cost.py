"""What the payload codec costs on the project's own payloads, alone, in one process.

    .venv/bin/python -m bench.codec_cost

The bench's bare+codec side seals the bare workflow's payloads, which are all under the codec's
compression threshold (COMPRESS_FROM): zlib never runs there. The project's payloads are larger
and most are compressed. This seals and opens every payload of each recorded history of the
newest review version (tests/histories/reviews/<newest>/, decrypted when recorded) once, with a
fresh key, and prints the CPU time per history: a floor for what the codec costs per review on
a worker, which encodes what it sends and decodes what it receives (some payloads more than once).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory

from infra.codec import COMPRESS_FROM, EncryptionCodec
from infra.keys import PayloadKeyring

HISTORIES = Path(__file__).resolve().parent.parent / "tests" / "histories" / "reviews" / "office-local-activities"
ROUNDS, BEST_OF = 50, 5


def payloads(message: Message) -> Iterator[Payload]:
    """Every payload inside a protobuf message, search attributes aside (they are not sealed)."""
    if isinstance(message, Payload):
        yield message
        return
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None or descriptor.name == "search_attributes":
            continue
        if descriptor.message_type.GetOptions().map_entry:
            items = value.values()
        elif descriptor.is_repeated:
            items = value
        else:
            items = [value]
        for item in items:
            if isinstance(item, Message):
                yield from payloads(item)


async def cost(codec: EncryptionCodec, found: list[Payload]) -> float:
    """CPU seconds to seal and open `found` once (the best of BEST_OF averages over ROUNDS)."""
    best = float("inf")
    for _ in range(BEST_OF):
        start = time.process_time()
        for _ in range(ROUNDS):
            await codec.decode(await codec.encode(found))
        best = min(best, (time.process_time() - start) / ROUNDS)
    return best


async def main() -> None:
    codec = EncryptionCodec(PayloadKeyring.generate())
    for path in sorted(HISTORIES.glob("*.json.gz")):
        history = WorkflowHistory.from_json(path.stem, json.loads(gzip.decompress(path.read_bytes())))
        found = [p for event in history.events for p in payloads(event)]
        size = sum(p.ByteSize() for p in found)
        compressed = sum(p.ByteSize() >= COMPRESS_FROM for p in found)
        seconds = await cost(codec, found)
        print(
            f"{path.name.removesuffix('.json.gz'):<24} {len(history.events):>3} events, {len(found):>3} payloads "
            f"({compressed} over {COMPRESS_FROM} B), {size / 1024:5.1f} KB: seal + open each once "
            f"{1000 * seconds:.2f} ms CPU"
        )


if __name__ == "__main__":
    asyncio.run(main())
