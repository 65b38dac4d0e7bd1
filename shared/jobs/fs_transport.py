"""Kombu's filesystem transport with atomic message files (the broker of the embedded local mode).

Kombu writes a message by opening ``<time>_<uuid>.<queue>.msg`` in the queue folder and then writing
into it. A consumer polling the folder meanwhile can move and read the file while it is still empty:
it fails to decode the message (``JSONDecodeError``) and deletes the file, and the sender's bytes land
in a file nobody reads any more. Under load this lost whole jobs' first messages. Here the message is
written under a name no consumer matches (``.tmp`` after ``.msg``), flushed, and renamed into place in
one ``os.replace``: a consumer sees a complete message or none.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.tmp"
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.remove(partial)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
