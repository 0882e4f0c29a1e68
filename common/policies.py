"""Storage policies: the named ways a container's objects can be stored.

``haneul.conf`` declares them, one section each::

    [policy:0]
    name = gold
    aliases = yellow, orange
    type = replication
    default = yes

    [policy:1]
    name = silver
    deprecated = yes

    [policy:2]
    name = ec42
    type = erasure_coding
    ec_type = isa_l_rs_vand
    ec_num_data_fragments = 4
    ec_num_parity_fragments = 2
    ec_object_segment_size = 1048576

With no ``[policy:N]`` section at all the cluster has one policy, 0, named "Policy-0".
Each policy keeps its objects on its own ring (``object.ring.gz`` for 0,
``object-<N>.ring.gz`` otherwise) and under its own directory on disk.

A policy type is a class registered in ``POLICY_TYPES`` under the name used by
``type =``; it declares the extra options it reads (``type_options``) and how it checks
them, so adding erasure coding is one more class, with nothing else here changing.
"""

import re

from common.config import ConfigError, config_int, config_true, haneul_conf_path, read_conf

SECTION_RE = re.compile(r"^policy:(\d+)$")
NAME_RE = re.compile(r"^[A-Za-z0-9-]+$")
COMMON_OPTIONS = frozenset({"name", "aliases", "type", "default", "deprecated"})
DEFAULT_TYPE = "replication"

POLICY_TYPES = {}


def register_policy_type(name):
    """Class decorator: make a StoragePolicy subclass available as ``type = <name>``."""

    def register(cls):
        cls.policy_type = name
        POLICY_TYPES[name] = cls
        return cls

    return register


class StoragePolicy:
    """One storage policy: an index, a name and aliases, and how objects are stored.

    Subclasses name their own options in ``type_options`` and read them in
    ``load_options``; they answer ``quorum_size(node_count)`` for writes.
    """

    policy_type = None
    type_options = frozenset()

    def __init__(self, index, name, aliases=(), is_default=False, is_deprecated=False):
        if not isinstance(index, int) or index < 0:
            raise ConfigError(f"storage policy index must be a non-negative integer: {index!r}")
        self.index = index
        self.names = []
        for each in [name, *aliases]:
            self._check_name(each)
            if each.lower() in (n.lower() for n in self.names):
                raise ConfigError(f"policy {index}: name {each!r} is given twice")
            self.names.append(each)
        self.is_default = bool(is_default)
        self.is_deprecated = bool(is_deprecated)
        if self.is_default and self.is_deprecated:
            raise ConfigError(f"policy {index} ({name}): the default policy cannot be deprecated")

    def _check_name(self, name):
        if not name or not NAME_RE.match(name):
            raise ConfigError(
                f"policy {self.index}: invalid name {name!r} "
                "(letters, digits and '-' only, not empty)"
            )

    def load_options(self, options):
        """Read this type's extra options (a dict of strings); the base type has none."""

    @property
    def name(self):
        """The primary name, as listed by /info and stored on containers."""
        return self.names[0]

    @property
    def aliases(self):
        """The other names the policy answers to."""
        return self.names[1:]

    @property
    def ring_name(self):
        """The object ring file's base name: ``object`` or ``object-<index>``."""
        return "object" if self.index == 0 else f"object-{self.index}"

    def quorum_size(self, node_count):
        """How many of ``node_count`` nodes must accept a write for it to succeed."""
        raise NotImplementedError

    def check_ring(self, ring_name, replica_count):
        """Raise ConfigError if a ring of ``replica_count`` replicas cannot hold this policy."""

    def info(self):
        """What /info shows about the policy."""
        entry = {"name": self.name, "aliases": ", ".join(self.names)}
        if self.is_default:
            entry["default"] = True
        if self.is_deprecated:
            entry["deprecated"] = True
        return entry

    def __repr__(self):
        return f"{type(self).__name__}({self.index}, {self.name!r})"


@register_policy_type("replication")
class ReplicationPolicy(StoragePolicy):
    """Whole copies of each object on every primary node of the object ring."""

    def quorum_size(self, node_count):
        return node_count // 2 + 1


DEFAULT_EC_SEGMENT_SIZE = 1048576


@register_policy_type("erasure_coding")
class ErasureCodingPolicy(StoragePolicy):
    """Objects cut into segments, each encoded (pyeclib) into k data + m parity fragments.

    Fragment ``i`` of every segment goes to primary ``i`` of the object ring, which needs
    exactly k + m replicas. Any k fragments of a segment give it back. The pyeclib driver
    is built once, when the policy is read, so a bad ``ec_type`` stops a server at start.
    """

    type_options = frozenset(
        {
            "ec_type",
            "ec_num_data_fragments",
            "ec_num_parity_fragments",
            "ec_object_segment_size",
        }
    )

    ec_type = None
    ec_ndata = 0
    ec_nparity = 0
    ec_segment_size = DEFAULT_EC_SEGMENT_SIZE
    _driver = None

    def load_options(self, options):
        where = f"policy {self.index} ({self.name})"
        self.ec_type = options.get("ec_type", "").strip()
        if not self.ec_type:
            raise ConfigError(f"{where}: ec_type is required for an erasure_coding policy")
        try:
            self.ec_ndata = config_int(
                options.get("ec_num_data_fragments", ""), "ec_num_data_fragments", 1
            )
            self.ec_nparity = config_int(
                options.get("ec_num_parity_fragments", ""), "ec_num_parity_fragments", 1
            )
            self.ec_segment_size = config_int(
                options.get("ec_object_segment_size", str(DEFAULT_EC_SEGMENT_SIZE)),
                "ec_object_segment_size",
                1,
            )
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        self._driver = self._build_driver(where)

    def _build_driver(self, where):
        try:
            from pyeclib.ec_iface import VALID_EC_TYPES, ECDriver, ECDriverError
        except ImportError:
            raise ConfigError(
                f"{where}: erasure coding needs pyeclib (pip install pyeclib)"
            ) from None
        if self.ec_type not in VALID_EC_TYPES:
            known = ", ".join(VALID_EC_TYPES)
            raise ConfigError(f"{where}: unknown ec_type {self.ec_type!r} (known: {known})")
        try:
            return ECDriver(k=self.ec_ndata, m=self.ec_nparity, ec_type=self.ec_type)
        except ECDriverError as err:
            raise ConfigError(
                f"{where}: ec_type {self.ec_type} with k={self.ec_ndata}, m={self.ec_nparity} "
                f"is not available here: {str(err).splitlines()[0]}"
            ) from None

    @property
    def driver(self):
        """The pyeclib ``ECDriver`` (encode, decode, reconstruct, get_segment_info)."""
        return self._driver

    @property
    def ec_n_fragments(self):
        """k + m: the fragments of every segment, and the object ring's replica count."""
        return self.ec_ndata + self.ec_nparity

    @property
    def fragment_size(self):
        """Bytes of one fragment of a whole segment (pyeclib header included)."""
        return self.fragment_size_for(self.ec_segment_size)

    def fragment_size_for(self, segment_length):
        """Bytes of one fragment of a segment of ``segment_length`` (<= segment size) bytes."""
        if segment_length <= 0:
            return 0
        info = self._driver.get_segment_info(segment_length, self.ec_segment_size)
        return info["fragment_size"]

    def quorum_size(self, node_count):
        """k + 1 fragment archives must be stored to commit (k when m is 1)."""
        return self.ec_ndata + (1 if self.ec_nparity > 1 else 0)

    def check_ring(self, ring_name, replica_count):
        if replica_count != self.ec_n_fragments:
            raise ConfigError(
                f"policy {self.index} ({self.name}): ring {ring_name} has {replica_count:g} "
                f"replicas but {self.ec_ndata}+{self.ec_nparity} erasure coding needs "
                f"{self.ec_n_fragments}"
            )


class StoragePolicies:
    """The cluster's policies, looked up by index or by (case-insensitive) name."""

    def __init__(self, policies):
        policies = sorted(policies, key=lambda p: p.index)
        if not policies:
            policies = [ReplicationPolicy(0, "Policy-0", is_default=True)]
        self._by_index = {}
        self._by_name = {}
        for policy in policies:
            if policy.index in self._by_index:
                raise ConfigError(f"storage policy index {policy.index} is defined twice")
            self._by_index[policy.index] = policy
            for name in policy.names:
                key = name.lower()
                if key in self._by_name:
                    other = self._by_name[key]
                    raise ConfigError(
                        f"policy name {name!r} is used by both policy {other.index} "
                        f"and policy {policy.index}"
                    )
                self._by_name[key] = policy
        if 0 not in self._by_index:
            raise ConfigError("storage policies must include policy 0 ([policy:0])")
        defaults = [p for p in policies if p.is_default]
        if len(defaults) > 1:
            listed = ", ".join(str(p.index) for p in defaults)
            raise ConfigError(f"more than one default storage policy: {listed}")
        if not defaults:
            if len(policies) > 1:
                raise ConfigError("several storage policies but none is marked default = yes")
            policies[0].is_default = True
            defaults = policies
        self.default = defaults[0]
        if self.default.is_deprecated:
            raise ConfigError("the default storage policy cannot be deprecated")
        self._ordered = policies

    def __iter__(self):
        return iter(self._ordered)

    def __len__(self):
        return len(self._ordered)

    def get_by_index(self, index):
        """The policy with this index (int or digit string), or None."""
        try:
            index = int(index)
        except (TypeError, ValueError):
            return None
        return self._by_index.get(index)

    def get_by_name(self, name):
        """The policy with this name or alias, ignoring case, or None."""
        if not name:
            return None
        return self._by_name.get(name.strip().lower())

    def info(self):
        """The ``policies`` list of /info: every policy that is not deprecated."""
        return [p.info() for p in self._ordered if not p.is_deprecated]


def _split_aliases(text):
    return [a.strip() for a in text.split(",") if a.strip()]


def policy_from_section(index, options):
    """Build one policy from the options (dict of str) of its ``[policy:N]`` section."""
    type_name = options.get("type", DEFAULT_TYPE).strip().lower() or DEFAULT_TYPE
    cls = POLICY_TYPES.get(type_name)
    if cls is None:
        known = ", ".join(sorted(POLICY_TYPES))
        raise ConfigError(f"[policy:{index}]: unknown policy type {type_name!r} (known: {known})")
    unknown = set(options) - COMMON_OPTIONS - cls.type_options
    if unknown:
        raise ConfigError(
            f"[policy:{index}]: unknown option(s) {', '.join(sorted(unknown))} for type {type_name}"
        )
    name = options.get("name", "").strip()
    if not name:
        if index != 0:
            raise ConfigError(f"[policy:{index}]: missing name")
        name = "Policy-0"
    try:
        is_default = config_true(options.get("default", "no"))
        is_deprecated = config_true(options.get("deprecated", "no"))
    except ConfigError as err:
        raise ConfigError(f"[policy:{index}]: {err}") from None
    policy = cls(
        index,
        name,
        aliases=_split_aliases(options.get("aliases", "")),
        is_default=is_default,
        is_deprecated=is_deprecated,
    )
    policy.load_options(options)
    return policy


def parse_policies(parser):
    """The StoragePolicies declared in a ConfigParser (a missing section means Policy-0)."""
    policies = []
    for section in parser.sections():
        if not section.lower().startswith("policy"):
            continue
        match = SECTION_RE.match(section)
        if not match:
            raise ConfigError(f"bad storage policy section [{section}]: expected [policy:<N>]")
        index = int(match.group(1))
        inherited = parser.defaults()
        options = {
            key: value for key, value in parser.items(section, raw=True) if key not in inherited
        }
        policies.append(policy_from_section(index, options))
    return StoragePolicies(policies)


def load_policies(path=None):
    """Read the policies of ``haneul.conf`` (``path``, else $HANEUL_CONF or /etc/haneul)."""
    path = path or haneul_conf_path()
    try:
        return parse_policies(read_conf(path))
    except ConfigError as err:
        if str(err).startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {err}") from None
