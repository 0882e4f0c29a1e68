"""Finding a storage device under the devices root, safely.

A request names a device (``sdb1``) and a partition; both come from the network, so
they are checked before they touch a path: no separators, no ``..``, no absolute paths.
"""

import os

from common.http import HTTPError


def check_device_name(device):
    """A device name is one plain path component."""
    if not device or device in (".", "..") or "/" in device or "\x00" in device:
        raise HTTPError(400, f"invalid device name: {device!r}")


def check_partition(partition):
    """The partition segment of a backend path, as an int (400 if it is not one)."""
    if (
        partition is None
        or len(partition) > 10
        or not partition.isdigit()
        or not partition.isascii()
    ):
        raise HTTPError(400, f"invalid partition: {partition!r}")
    return int(partition)


def device_path(devices_root, device, mount_check=False):
    """The absolute path of ``device``, or HTTPError(507) if it is missing or unmounted.

    With ``mount_check`` the device must be a mount point, so that a disk that failed to
    mount is never silently replaced by the root filesystem's directory.
    """
    check_device_name(device)
    path = os.path.join(devices_root, device)
    if mount_check:
        if not os.path.ismount(path):
            raise HTTPError(507, f"{device} is not mounted")
    elif not os.path.isdir(path):
        raise HTTPError(507, f"{device} is not a device here")
    return path


def list_devices(devices_root):
    """The device directory names under the root (sorted; empty if the root is missing)."""
    try:
        return sorted(
            name
            for name in os.listdir(devices_root)
            if os.path.isdir(os.path.join(devices_root, name))
        )
    except FileNotFoundError:
        return []
