"""Fragment archives in motion, for the reconstructor: read, rebuild, send.

- A ``FragmentSource`` reads one archive front to back in exact pieces: a local one
  through its DiskFileReader (``local_source``), a remote one through a backend GET of
  a primary that holds it durably (``remote_source``).
- ``rebuilt_segments`` turns k sources into the archive of a missing fragment index,
  one segment at a time: it reads each source's next fragment (a pyeclib fragment
  header names its payload length, so segment boundaries come from the data itself,
  whatever segment size the writer used), and runs ``driver.reconstruct``. Only one
  segment's fragments are ever in memory.
- A source checksums what it reads against the archive's stored ``ETag`` (its CRC32,
  object_server.ec_diskfile): once the last segment is out, a damaged source raises
  RebuildError, so the archive built from it, or the damaged archive itself on its
  way home, is never committed.
- ``push_fragment`` sends an archive to a node with the proxy's two-phase contract
  (object_server.ec_commit): a PUT of the bytes, then a POST commit with the footer.
- ``remote_hashes`` asks a node for its suffix hashes (REPLICATE).
"""

import struct

from common.backend import BackendConnection, backend_path, request
from common.crc32 import CRC32
from common.timestamp import InvalidTimestamp, Timestamp
from object_server.ec_commit import COMMIT_HEADER
from object_server.ec_diskfile import (
    EC_ARCHIVE_ETAG_KEY,
    EC_CONTENT_LENGTH_KEY,
    EC_ETAG_KEY,
    FRAG_INDEX_HEADER,
    PER_FRAGMENT_KEYS,
    archive_checksum,
)
from object_server.partition_walk import replicate, where

FRAGMENT_HEADER_SIZE = 80  # liberasurecode's fragment_header_t
BACKEND_METADATA_SIZE = struct.Struct("=I")  # at offset 8 of the header
MAX_HASHES_ANSWER = 4 * 1024 * 1024
MAX_ERROR_BODY = 1024
# Metadata keys that are not sent as headers of a fragment's PUT.
NOT_SENT = frozenset({"name", "content-length", "etag", "x-timestamp"}) | PER_FRAGMENT_KEYS


class RebuildError(Exception):
    """A fragment could not be read, rebuilt or sent."""


def object_names(metadata):
    """``(account, container, object)`` of a fragment's ``name`` metadata."""
    parts = metadata.get("name", "").split("/", 3)
    if len(parts) != 4 or parts[0] or not all(parts[1:]):
        raise RebuildError(f"fragment has no usable name: {metadata.get('name')!r:.80}")
    return tuple(parts[1:])


def wsgi_header(text):
    """A UTF-8 metadata value as the latin-1 string http.client sends as those bytes."""
    return text.encode("utf-8").decode("latin-1")


# -- reading archives ------------------------------------------------------------------


class FragmentSource:
    """One fragment archive, read front to back with ``read_exact``.

    With ``etag``, the archive's stored checksum, every byte read is checksummed too,
    and ``verify()`` tells once the whole archive is read whether it was intact.
    """

    def __init__(self, frag_index, read, close, label, etag=None):
        self.frag_index = frag_index
        self._read = read
        self._close = close
        self.label = label
        self.etag = (etag or "").strip('"').lower()
        self._checksum = archive_checksum(self.etag) if self.etag else None

    def read_exact(self, size):
        parts = []
        wanted = size
        while wanted > 0:
            chunk = self._read(wanted)
            if not chunk:
                raise RebuildError(f"{self.label}: archive ended early")
            if self._checksum is not None:
                self._checksum.update(chunk)
            parts.append(chunk)
            wanted -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def verify(self):
        """Raise RebuildError if the archive, read to its end, does not match its
        checksum (an archive of unknown checksum passes)."""
        if self._checksum is None:
            return
        got = self._checksum.hexdigest()
        if got != self.etag:
            raise RebuildError(
                f"{self.label}: archive damaged: its bytes give {got}, not {self.etag}"
            )

    def close(self):
        self._close()


def local_source(df, label="local"):
    """A FragmentSource over an open ECDiskFile's archive (it takes the open file)."""
    etag = df.get_datafile_metadata().get("ETag")
    reader = df.reader()
    position = 0

    def read(size):
        nonlocal position
        data = b"".join(reader.iter_range(position, position + size))
        position += len(data)
        return data

    return FragmentSource(df.frag_index, read, reader.close, label, etag)


def remote_source(node, part, names, policy_index, timestamp, length, ec_etag, timeouts):
    """A FragmentSource reading a primary's durable archive of the same write.

    The answer must be that write's (same data timestamp and, if known, original
    ETag) and of the same length; otherwise RebuildError.
    """
    headers = {
        "X-Backend-Storage-Policy-Index": str(policy_index),
        "X-Backend-Server-Type": "object",
    }
    conn = BackendConnection.open(node, "GET", backend_path(part, *names), headers, **timeouts)
    try:
        resp = conn.getresponse()
        if resp.status != 200:
            raise RebuildError(f"{where(node)}: GET answered {resp.status}")
        problem = _source_problem(resp, timestamp, length, ec_etag)
        if problem:
            raise RebuildError(f"{where(node)}: {problem}")
        frag_index = int(resp.getheader(FRAG_INDEX_HEADER))
    except BaseException:
        conn.close()
        raise
    return FragmentSource(frag_index, conn.read, conn.close, where(node), resp.getheader("ETag"))


def _source_problem(resp, timestamp, length, ec_etag):
    """Why a GET's answer is not a fragment of the write being rebuilt, or None."""
    try:
        data_ts = Timestamp(resp.getheader("X-Backend-Data-Timestamp", ""))
    except InvalidTimestamp:
        return "no data timestamp"
    if data_ts != timestamp:
        return f"holds the write of {data_ts.internal}, not {timestamp.internal}"
    index = resp.getheader(FRAG_INDEX_HEADER, "")
    if not index.isdigit():
        return "not a fragment archive"
    if resp.getheader("Content-Length") != str(length):
        return f"archive of {resp.getheader('Content-Length')} bytes, not {length}"
    if ec_etag and resp.getheader(EC_ETAG_KEY) != ec_etag:
        return "another object's fragment"
    return None


# -- rebuilding -------------------------------------------------------------------------


def next_fragment(driver, source):
    """The next whole fragment (header and payload) of a source."""
    header = source.read_exact(FRAGMENT_HEADER_SIZE)
    try:
        info = driver.get_metadata(header, formatted=True)
    except Exception as err:  # pyeclib raises its own ECDriverError kinds
        raise RebuildError(f"{source.label}: bad fragment header: {err}") from None
    if info["index"] != source.frag_index:
        raise RebuildError(
            f"{source.label}: fragment {info['index']} in archive {source.frag_index}"
        )
    extra = BACKEND_METADATA_SIZE.unpack_from(header, 8)[0]
    return header + source.read_exact(info["size"] + extra)


def rebuilt_segments(driver, sources, frag_index, archive_length):
    """Yield the archive of ``frag_index``, segment by segment, from k ``sources``;
    RebuildError after the last one if a source was damaged."""
    remaining = archive_length
    while remaining > 0:
        fragments = [next_fragment(driver, source) for source in sources]
        size = len(fragments[0])
        if any(len(f) != size for f in fragments) or size > remaining:
            raise RebuildError("sources disagree on the segment layout")
        try:
            rebuilt = driver.reconstruct(fragments, [frag_index])[0]
        except Exception as err:  # pyeclib's ECDriverError kinds
            raise RebuildError(f"reconstruct failed: {err}") from None
        if len(rebuilt) != size:
            raise RebuildError(f"rebuilt fragment of {len(rebuilt)} bytes, expected {size}")
        remaining -= size
        yield rebuilt
    for source in sources:
        source.verify()


def archive_chunks(source, length, chunk_size=65536):
    """Yield a source's whole archive (for moving a fragment as it is); RebuildError
    after the last chunk if it was damaged."""
    remaining = length
    while remaining > 0:
        chunk = source.read_exact(min(chunk_size, remaining))
        remaining -= len(chunk)
        yield chunk
    source.verify()


# -- sending -------------------------------------------------------------------------------


def push_fragment(node, part, policy_index, frag_index, metadata, timestamp, chunks, timeouts):
    """PUT an archive as fragment ``frag_index`` of a write, then commit it.

    ``metadata`` is a fragment's .data metadata (its name, Content-Length = the archive
    length, user metadata and EC sysmeta); ``chunks`` yields the archive. Returns the
    archive's checksum (its CRC32, as the node takes it), or None if the node already
    holds that write or a newer one.
    Raises RebuildError or BackendError.
    """
    names = object_names(metadata)
    path = backend_path(part, *names)
    length = int(metadata["Content-Length"])
    headers = {
        key: wsgi_header(value) for key, value in metadata.items() if key.lower() not in NOT_SENT
    }
    headers.update(_fragment_headers(policy_index, frag_index, timestamp))
    headers["Content-Length"] = str(length)
    conn = BackendConnection.open(node, "PUT", path, headers, **timeouts)
    checksum = CRC32()
    sent = 0
    try:
        for chunk in chunks:
            conn.send(chunk)
            checksum.update(chunk)
            sent += len(chunk)
        if sent != length:
            raise RebuildError(f"archive of {sent} bytes, expected {length}")
        resp = conn.getresponse()
        body = conn.read(MAX_ERROR_BODY)
    finally:
        conn.close()
    if resp.status == 409:
        return None
    if resp.status != 201:
        raise RebuildError(f"{where(node)}: PUT answered {resp.status}: {body[:200]!r}")
    etag = checksum.hexdigest()
    commit = _fragment_headers(policy_index, frag_index, timestamp)
    commit[COMMIT_HEADER] = "true"
    commit[EC_ETAG_KEY] = metadata.get(EC_ETAG_KEY, "")
    commit[EC_CONTENT_LENGTH_KEY] = metadata.get(EC_CONTENT_LENGTH_KEY, "")
    commit[EC_ARCHIVE_ETAG_KEY] = etag
    result = request(node, "POST", path, commit, **timeouts)
    if result.status != 201:
        raise RebuildError(f"{where(node)}: commit answered {result.status}: {result.body[:200]!r}")
    return etag


def _fragment_headers(policy_index, frag_index, timestamp):
    return {
        "X-Timestamp": timestamp.internal,
        "X-Backend-Storage-Policy-Index": str(policy_index),
        FRAG_INDEX_HEADER: str(frag_index),
        "X-Backend-Server-Type": "object",
    }


def remote_hashes(node, part, policy_index, timeouts):
    """A node's ``{suffix: {frag index or "none": md5}}`` of a partition (REPLICATE).

    Raises RemoteUnmounted on 507, ReplicationError on anything else but 200.
    """
    return replicate(node, part, policy_index, (), MAX_HASHES_ANSWER, **timeouts)
