"""Safe extraction of tar archives (git archive output, Helm charts, OCI layers).

Only regular files, directories and symlinks that stay inside the destination are
extracted. Members with absolute paths or ``..`` components, symlinks or hard links
pointing outside the tree, device files and FIFOs are refused, and the total size and
member count are bounded, so a hostile archive cannot write outside its directory or
fill the disk. Extraction goes into a temporary sibling directory that is renamed into
place only when complete, so a reader never sees half an artifact.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Self

from gitopsd import SourceError

if TYPE_CHECKING:
    import tarfile

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_MEMBERS = 100_000


def cache_entry(cache: Path, name: str, where: str) -> Path:
    """``cache / name``, refusing a name that would resolve anywhere but directly inside ``cache``.

    A single name (no ``/``, ``.`` or ``..``) that is not a symlink resolves to the real cache
    directory plus that name: one ``lstat``, not a ``realpath`` of every component (this runs
    for every app at every new revision).
    """
    if "/" in name or "\0" in name or name in ("", ".", "..") or os.path.islink(cache / name):
        raise SourceError(f"{where}: cache entry {name!r} would leave the cache {cache}", reason="UnsafeArchive")
    return cache / name


def _clean_name(name: str, where: str) -> str:
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise SourceError(f"{where}: archive member {name!r} has an absolute path", reason="UnsafeArchive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise SourceError(f"{where}: archive member {name!r} has a '..' path component", reason="UnsafeArchive")
    return "/".join(parts)


def _inside(base: str, target: str) -> bool:
    normal = posixpath.normpath(target)
    return normal != ".." and not normal.startswith("../") and not posixpath.isabs(normal)


def extract_tar(
    data: bytes,
    dest: Path,
    *,
    where: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> None:
    """Extract the (optionally gzip-compressed) tar ``data`` into ``dest``, which must not exist.

    Raises SourceError(reason="UnsafeArchive") for a hostile member and
    SourceError(reason="TooLarge") when the limits are exceeded. ``where`` names the
    archive in errors.
    """
    extract_tar_stream(io.BytesIO(data), dest, where=where, max_bytes=max_bytes, max_members=max_members,
                       mode="r:*")


def extract_tar_stream(
    stream: IO[bytes],
    dest: Path,
    *,
    where: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    mode: str = "r|*",
) -> int:
    """Like :func:`extract_tar`, reading ``stream`` sequentially (a pipe): memory stays bounded and
    the limits stop the extraction as soon as they are crossed, whatever the archive's size.

    Returns the bytes of regular files extracted (what ``max_bytes`` bounds)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        total, _ = extract_tar_stream_into(stream, tmp, where=where, max_bytes=max_bytes,
                                           max_members=max_members, mode=mode)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # somebody else finished first: theirs is identical
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return total


def extract_tar_stream_into(
    stream: IO[bytes],
    root: Path,
    *,
    where: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    mode: str = "r|*",
    already: tuple[int, int] = (0, 0),
) -> tuple[int, int]:
    """Extract into the existing directory ``root`` (private to the caller, not yet visible to
    readers) with every check of :func:`extract_tar`; return (bytes of regular files, members),
    counting from ``already`` (what ``root`` holds), which the limits include.

    A member may not replace anything already in ``root`` ("appears twice"), and no file is
    written through a symlink already there. Symlinks are checked against ``root`` as a whole.
    """
    return _extract_into(stream, mode, root, where, max_bytes, max_members, already)


def _extract_into(stream: IO[bytes], mode: str, root: Path, where: str, max_bytes: int,
                  max_members: int, already: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    import tarfile  # on the first fetch, not at start (docs/operations.md, "Start-up and readiness")

    try:
        archive = tarfile.open(fileobj=stream, mode=mode, tarinfo=_tarinfo_class())  # type: ignore[call-overload]
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SourceError(f"{where}: not a tar archive: {exc}", reason="InvalidArchive") from None
    total, count = already
    links: list[tuple[str, str]] = []
    ready: set[str] = set()  # directories (relative) checked by _check_parents and made
    base = os.fspath(root)
    with archive:
        try:
            for member in archive:
                count += 1
                if count > max_members:
                    raise SourceError(f"{where}: archive has more than {max_members} members", reason="TooLarge")
                name = _clean_name(member.name, where)
                if not name:
                    continue
                # Plain strings, not Paths: this loop runs for every file of a repository.
                target = f"{base}/{name}"
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                elif member.isreg():
                    total += member.size
                    if total > max_bytes:
                        raise SourceError(
                            f"{where}: archive expands to more than {max_bytes} bytes (limit)", reason="TooLarge"
                        )
                    parent = posixpath.dirname(name)
                    if parent not in ready:
                        # Checked once per directory: no symlink is made before every file is
                        # written, and a directory checked here stays one until then.
                        _check_parents(root, name, where)
                        os.makedirs(f"{base}/{parent}" if parent else base, exist_ok=True)
                        ready.add(parent)
                    data = _small_member_data(archive, member)
                    source = archive.extractfile(member) if data is None else None
                    if data is None and source is None:
                        continue
                    try:  # O_EXCL: an existing file, directory or symlink (not followed) is refused
                        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                    except FileExistsError:
                        raise SourceError(f"{where}: archive member {name!r} appears twice", reason="UnsafeArchive") from None
                    try:
                        if data is not None:
                            _write_all(fd, data)
                        else:
                            assert source is not None
                            with source:
                                _write_member(source, fd, member.size)
                        os.fchmod(fd, 0o755 if member.mode & 0o111 else 0o644)
                    finally:
                        os.close(fd)
                elif member.issym():
                    link = member.linkname
                    resolved = posixpath.join(posixpath.dirname(name), link)
                    if posixpath.isabs(link) or not _inside(name, resolved):
                        raise SourceError(
                            f"{where}: symlink {name!r} -> {link!r} points outside the artifact",
                            reason="UnsafeArchive",
                        )
                    links.append((name, link))
                elif member.islnk():
                    link_name = _clean_name(member.linkname, where)
                    raise SourceError(
                        f"{where}: hard link {name!r} -> {link_name!r} is not allowed", reason="UnsafeArchive"
                    )
                elif member.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, "g", "x"):
                    continue
                else:
                    raise SourceError(
                        f"{where}: archive member {name!r} is a device or FIFO, not allowed", reason="UnsafeArchive"
                    )
        except (tarfile.TarError, EOFError, OSError, UnicodeError) as exc:
            if isinstance(exc, SourceError):
                raise
            raise SourceError(f"{where}: corrupt archive: {exc}", reason="InvalidArchive") from None
    # Symlinks last, so that no regular file is ever written through one.
    for name, link in links:
        _check_parents(root, name, where)
        link_path = root / name
        try:
            link_path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(link, link_path)
        except OSError as exc:
            raise SourceError(f"{where}: cannot create symlink {name!r}: {exc.strerror}", reason="UnsafeArchive") from None
    check_symlinks(root, [name for name, _ in links], where)
    return total, count


_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
"""A POSIX ustar header: name, mode, uid, gid, size, mtime, chksum, type, linkname, magic and
version, uname, gname, devmajor, devminor, prefix."""
_GIT_TYPES = frozenset((b"0", b"5", b"2", b"x", b"g"))
"""The member types git archive writes: regular file, directory, symlink, pax headers."""
_TARINFO: type | None = None


def _header_sum(header: bytes | bytearray) -> int:
    """The sum of the 512 bytes of a tar header, in C.

    Adler-32's first half is 1 plus that sum modulo 65521: over 256 bytes from a start of 0,
    the sum (at most 65,280) is exact. ``sum(header)`` makes an int of each byte.
    """
    view = memoryview(header)
    return (zlib.adler32(view[:256], 0) & 0xFFFF) + (zlib.adler32(view[256:], 0) & 0xFFFF)


def _tarinfo_class() -> type:
    """tarfile's TarInfo with a quicker header parser (tarfile itself loads on first use)."""
    global _TARINFO
    if _TARINFO is None:
        import tarfile

        class GitTarInfo(tarfile.TarInfo):
            """A member whose ustar header, as git archive writes it, is read in a few C calls.

            tarfile checks a header's checksum by unpacking its 512 bytes into two tuples of
            ints (unsigned and signed): two thirds of the instructions of extracting a small
            file. Here the checksum is summed in C (:func:`_header_sum`) and the fields come
            from one ``unpack``. Any other header (GNU or old formats, base-256 numbers, other
            types, a signed checksum, anything invalid) goes to tarfile's own parser, errors
            included.
            """

            @classmethod
            def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
                if len(buf) != tarfile.BLOCKSIZE or buf[257:265] != b"ustar\x0000" or buf[156:157] not in _GIT_TYPES:
                    return super().frombuf(buf, encoding, errors)
                (name, mode, uid, gid, size, mtime, chksum, kind, linkname, _, uname, gname,
                 devmajor, devminor, prefix) = _USTAR.unpack(buf)
                numbers = (mode, uid, gid, size, mtime, chksum, devmajor, devminor)
                try:  # octal, as tarfile.nti reads it (a NUL ends it); a base-256 number is no octal
                    values = [int(n.split(b"\0", 1)[0].strip() or b"0", 8) for n in numbers]
                except ValueError:
                    return super().frombuf(buf, encoding, errors)
                if values[5] != _header_sum(buf) - sum(chksum) + 8 * 32:  # the checksum field counts as spaces
                    return super().frombuf(buf, encoding, errors)
                obj = cls()
                obj.mode, obj.uid, obj.gid, obj.size, obj.mtime, obj.chksum, obj.devmajor, obj.devminor = values
                obj.type = kind
                obj.name = name.split(b"\0", 1)[0].decode(encoding, errors)
                obj.linkname = linkname.split(b"\0", 1)[0].decode(encoding, errors)
                obj.uname = uname.split(b"\0", 1)[0].decode(encoding, errors)
                obj.gname = gname.split(b"\0", 1)[0].decode(encoding, errors)
                if kind == tarfile.DIRTYPE:
                    obj.name = obj.name.rstrip("/")
                prefix = prefix.split(b"\0", 1)[0].decode(encoding, errors)
                if prefix:  # a ustar long name
                    obj.name = prefix + "/" + obj.name
                return obj

        _TARINFO = GitTarInfo
    return _TARINFO


SMALL_FILE = 1024 * 1024
"""Members up to this size are read whole and written with one call; larger ones are copied in chunks."""


def _small_member_data(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes | None:
    """A small regular member's content, read where the archive's stream stands, or None (then
    tarfile's ``extractfile``).

    tarfile has just read the member's header, so its stream stands at the member's data
    (checked: ``offset_data``). Its own file object for a member (a buffered reader over a
    window of the stream) costs some ten Python calls more than this one read; tarfile
    skips to the next header from wherever the stream stands. A sparse member's data is not
    its content: tarfile's.
    """
    stream = archive.fileobj
    if member.size > SMALL_FILE or member.sparse is not None or stream is None or stream.tell() != member.offset_data:
        return None
    data = stream.read(member.size)
    if len(data) != member.size:
        import tarfile

        raise tarfile.ReadError("unexpected end of data")  # what tarfile's own reader says
    return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_member(source: IO[bytes], fd: int, size: int) -> None:
    """Copy a member's ``size`` bytes to ``fd``: most files of a repository are small, and one
    read and one write cost less than a copy loop and a Python file object around ``fd``."""
    if size > SMALL_FILE:
        with open(fd, "wb", closefd=False) as out:
            shutil.copyfileobj(source, out)
        return
    _write_all(fd, source.read(size))


def check_symlinks(root: Path, names: list[str], where: str) -> None:
    """Resolve each symlink ``names`` (relative to ``root``) for real: a chain of symlinks, each
    pointing inside, may still resolve outside ``root``; refuse that (UnsafeArchive)."""
    real_root = root.resolve()
    for name in names:
        real = (root / name).resolve()
        if real != real_root and real_root not in real.parents:
            raise SourceError(f"{where}: symlink {name!r} resolves outside the artifact", reason="UnsafeArchive")


def _check_parents(root: Path, name: str, where: str) -> None:
    """Refuse writing through a directory that is a symlink (created by an earlier member)."""
    current = os.fspath(root)
    for part in name.split("/")[:-1]:
        current = f"{current}/{part}"
        if os.path.islink(current):
            raise SourceError(f"{where}: archive member {name!r} is written through a symlink", reason="UnsafeArchive")
