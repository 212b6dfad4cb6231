"""RBAC evaluation, as Kubernetes' plugin/pkg/auth/authorizer/rbac and pkg/registry/rbac/validation do it.

Pure logic over a `PolicySource` (the four kinds, as plain dicts): which rules apply to a user in a namespace,
whether a request is allowed (and by which binding), and whether one set of rules covers another (escalation
prevention). The apiserver's source reads its watch cache (authz/cache.py); the unit tests use StaticPolicy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol

from .requestinfo import RequestInfo

Obj = dict[str, Any]
RBAC_GROUP = "rbac.authorization.k8s.io"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Attributes(RequestInfo):
    """What a request does and who makes it (Kubernetes' authorizer.Attributes)."""
    user: UserInfo = field(kw_only=True)


@dataclass(frozen=True)
class Rule:
    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @staticmethod
    def of(d: Obj) -> "Rule":
        def strs(key: str) -> tuple[str, ...]:
            value = d.get(key) or ()
            return tuple(s for s in value if isinstance(s, str)) if isinstance(value, list) else ()
        return Rule(strs("verbs"), strs("apiGroups"), strs("resources"), strs("resourceNames"),
                    strs("nonResourceURLs"))

    def to_dict(self) -> Obj:
        out: Obj = {"verbs": list(self.verbs)}
        for key, value in (("apiGroups", self.api_groups), ("resources", self.resources),
                           ("resourceNames", self.resource_names), ("nonResourceURLs", self.non_resource_urls)):
            if value:
                out[key] = list(value)
        return out

    def compact_string(self) -> str:
        """Kubernetes' PolicyRule.CompactString: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`."""
        parts = [f"{label}:[{' '.join(_go_quote(s) for s in value)}]"
                 for label, value in (("APIGroups", self.api_groups), ("Resources", self.resources),
                                      ("ResourceNames", self.resource_names),
                                      ("NonResourceURLs", self.non_resource_urls), ("Verbs", self.verbs))
                 if value]
        return "{" + ", ".join(parts) + "}"


def _go_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def go_quote_list(items: Iterable[str]) -> str:
    """Go's %q of a []string: `["a" "b"]`."""
    return "[" + " ".join(_go_quote(s) for s in items) + "]"


# -- matching (rbac.go) -------------------------------------------------------------------------------

def verb_matches(rule: Rule, verb: str) -> bool:
    return "*" in rule.verbs or verb in rule.verbs


def api_group_matches(rule: Rule, group: str) -> bool:
    return "*" in rule.api_groups or group in rule.api_groups


def resource_matches(rule: Rule, combined: str, subresource: str) -> bool:
    for r in rule.resources:
        if r == "*" or r == combined:
            return True
        # "*/status" matches the status subresource of every resource.
        if subresource and len(r) == len(subresource) + 2 and r.startswith("*/") and r.endswith(subresource):
            return True
    return False


def resource_name_matches(rule: Rule, name: str) -> bool:
    return not rule.resource_names or name in rule.resource_names


def non_resource_url_matches(rule: Rule, path: str) -> bool:
    for url in rule.non_resource_urls:
        if url == "*" or url == path or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def rule_allows(attrs: Attributes, rule: Rule) -> bool:
    if attrs.resource_request:
        combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        return (verb_matches(rule, attrs.verb) and api_group_matches(rule, attrs.api_group)
                and resource_matches(rule, combined, attrs.subresource) and resource_name_matches(rule, attrs.name))
    return verb_matches(rule, attrs.verb) and non_resource_url_matches(rule, attrs.path)


def service_account_username(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def describe_subject(subject: Obj, binding_namespace: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return f'{subject.get("kind")} "{namespace}/{subject.get("name")}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


# -- the policy: bindings and the roles they reference ---------------------------------------------------

class PolicySource(Protocol):
    def bindings(self, user: UserInfo, namespace: str) -> Iterable[tuple[Obj, str, Obj]]: ...
    def cluster_role(self, name: str) -> Obj | None: ...
    def role(self, namespace: str, name: str) -> Obj | None: ...
    def rules_of(self, role: Obj) -> tuple[Rule, ...]: ...


class StaticPolicy:
    """A PolicySource over lists of objects (tests, and the cache's snapshot)."""

    def __init__(self, objects: Iterable[Obj]) -> None:
        self.cluster_roles: dict[str, Obj] = {}
        self.roles: dict[tuple[str, str], Obj] = {}
        self._rules: dict[int, tuple[Rule, ...]] = {}
        # Bindings indexed by the subjects they name: (namespace of the binding or "", subject key) →
        # [(position, binding, subject)], so that a request looks only at the bindings of its user.
        self._by_subject: dict[tuple[str, str], list[tuple[int, Obj, Obj]]] = {}
        for position, obj in enumerate(objects):
            meta = obj.get("metadata") or {}
            kind, name, ns = obj.get("kind"), meta.get("name", ""), meta.get("namespace", "")
            if kind in ("ClusterRoleBinding", "RoleBinding"):
                scope = ns if kind == "RoleBinding" else ""
                for subject in obj.get("subjects") or ():
                    key = _subject_key(subject, scope) if isinstance(subject, dict) else None
                    if key is not None:
                        self._by_subject.setdefault((scope, key), []).append((position, obj, subject))
            elif kind == "ClusterRole":
                self.cluster_roles[name] = obj
            elif kind == "Role":
                self.roles[(ns, name)] = obj

    def bindings(self, user: UserInfo, namespace: str) -> Iterator[tuple[Obj, str, Obj]]:
        """(binding, its namespace, the subject that matched) for every binding that applies to user: cluster-wide
        bindings first, then the RoleBindings of `namespace`, each binding once, in the order they were listed."""
        keys = [f"User:{user.name}", *(f"Group:{g}" for g in user.groups)]
        for scope in ("", namespace) if namespace else ("",):
            found: dict[int, tuple[Obj, Obj]] = {}
            for key in keys:
                for position, binding, subject in self._by_subject.get((scope, key), ()):
                    found.setdefault(position, (binding, subject))
            for position in sorted(found):
                binding, subject = found[position]
                yield binding, scope, subject

    def cluster_role(self, name: str) -> Obj | None:
        return self.cluster_roles.get(name)

    def role(self, namespace: str, name: str) -> Obj | None:
        return self.roles.get((namespace, name))

    def rules_of(self, role: Obj) -> tuple[Rule, ...]:
        # Parsed once per role object (the snapshot is rebuilt when any RBAC object changes).
        key = id(role)
        rules = self._rules.get(key)
        if rules is None:
            rules = self._rules[key] = tuple(Rule.of(r) for r in role.get("rules") or () if isinstance(r, dict))
        return rules


def _subject_key(subject: Obj, binding_namespace: str) -> str | None:
    """How a subject is looked up: a user (service accounts by their user name) or a group."""
    kind, name = subject.get("kind"), subject.get("name")
    if not isinstance(name, str):
        return None
    if kind == "User":
        return f"User:{name}"
    if kind == "Group":
        return f"Group:{name}"
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return f"User:{service_account_username(namespace, name)}" if namespace else None
    return None


class RoleNotFound(Exception):
    pass


def role_ref_rules(policy: PolicySource, role_ref: Obj, binding_namespace: str) -> tuple[Rule, ...]:
    """The rules of a binding's roleRef (RoleNotFound with Kubernetes' NotFound wording if it is missing)."""
    kind, name = role_ref.get("kind"), str(role_ref.get("name") or "")
    if kind == "ClusterRole":
        role = policy.cluster_role(name)
        if role is None:
            raise RoleNotFound(f'clusterrole.{RBAC_GROUP} "{name}" not found')
        return policy.rules_of(role)
    if kind == "Role":
        role = policy.role(binding_namespace, name)
        if role is None:
            raise RoleNotFound(f'role.{RBAC_GROUP} "{name}" not found')
        return policy.rules_of(role)
    raise RoleNotFound(f"unsupported role reference kind: {kind!r}")


def _describe(binding: Obj, namespace: str, subject: Obj) -> str:
    name = (binding.get("metadata") or {}).get("name", "")
    ref = binding.get("roleRef") or {}
    if namespace:
        where = f'RoleBinding "{name}/{namespace}"'
    else:
        where = f'ClusterRoleBinding "{name}"'
    return f'{where} of {ref.get("kind")} "{ref.get("name")}" to {describe_subject(subject, namespace)}'


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def authorize(policy: PolicySource, attrs: Attributes) -> Decision:
    """RBAC's decision: allowed with the binding that allowed it, or no opinion (reason: resolution errors)."""
    errors: list[str] = []
    for binding, namespace, subject in policy.bindings(attrs.user, attrs.namespace):
        try:
            rules = role_ref_rules(policy, binding.get("roleRef") or {}, namespace)
        except RoleNotFound as e:
            errors.append(str(e))
            continue
        for rule in rules:
            if rule_allows(attrs, rule):
                return Decision(True, "RBAC: allowed by " + _describe(binding, namespace, subject))
    reason = ""
    if errors:
        reason = "RBAC: " + (errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")
    return Decision(False, reason)


def rules_for(policy: PolicySource, user: UserInfo, namespace: str) -> tuple[list[Rule], list[str]]:
    """Every rule that applies to user in namespace (cluster-wide ones included), and the resolution errors."""
    rules: list[Rule] = []
    errors: list[str] = []
    for binding, ns, _ in policy.bindings(user, namespace):
        try:
            rules.extend(role_ref_rules(policy, binding.get("roleRef") or {}, ns))
        except RoleNotFound as e:
            errors.append(str(e))
    return rules, errors


# -- escalation: does one set of rules cover another (policy_comparator.go) -----------------------------

def breakdown(rule: Rule) -> list[Rule]:
    """One rule per (group, resource, verb[, name]) and per (url, verb)."""
    out: list[Rule] = []
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                if rule.resource_names:
                    out.extend(Rule((verb,), (group,), (resource,), (name,)) for name in rule.resource_names)
                else:
                    out.append(Rule((verb,), (group,), (resource,)))
    for url in rule.non_resource_urls:
        for verb in rule.verbs:
            out.append(Rule((verb,), non_resource_urls=(url,)))
    return out


def _resource_covers(owner: tuple[str, ...], servant: str) -> bool:
    if servant in owner:
        return True
    base, slash, sub = servant.partition("/")
    return bool(slash) and f"*/{sub}" in owner


def _url_covers(owner: tuple[str, ...], path: str) -> bool:
    return any(o == path or (o.endswith("*") and path.startswith(o.rstrip("*"))) for o in owner)


def rule_covers(owner: Rule, sub: Rule) -> bool:
    verbs = "*" in owner.verbs or set(sub.verbs) <= set(owner.verbs)
    groups = "*" in owner.api_groups or set(sub.api_groups) <= set(owner.api_groups)
    resources = "*" in owner.resources or all(_resource_covers(owner.resources, r) for r in sub.resources)
    urls = all(_url_covers(owner.non_resource_urls, u) for u in sub.non_resource_urls)
    if sub.resource_names:
        names = not owner.resource_names or set(sub.resource_names) <= set(owner.resource_names)
    else:
        names = not owner.resource_names
    return verbs and groups and resources and names and urls


def covers(owner: list[Rule], requested: Iterable[Rule]) -> list[Rule]:
    """The pieces of `requested` that no rule of `owner` covers (empty: covered)."""
    missing: list[Rule] = []
    for rule in requested:
        for piece in breakdown(rule):
            if not any(rule_covers(o, piece) for o in owner):
                missing.append(piece)
    return missing


def compact(rules: list[Rule]) -> list[Rule]:
    """Merge the verbs of simple rules (one group, one resource, at most one name), as CompactRules does."""
    simple: dict[tuple[str, str, tuple[str, ...]], Rule] = {}
    out: list[Rule] = []
    for r in rules:
        if len(r.api_groups) == 1 and len(r.resources) == 1 and not r.non_resource_urls and len(r.resource_names) <= 1:
            key = (r.api_groups[0], r.resources[0], r.resource_names)
            prev = simple.get(key)
            simple[key] = r if prev is None else Rule(prev.verbs + r.verbs, prev.api_groups, prev.resources,
                                                       prev.resource_names)
        else:
            out.append(r)
    return out + list(simple.values())


def escalation_message(user: UserInfo, missing: list[Rule], errors: list[str]) -> str:
    described = sorted({r.compact_string() for r in compact(missing)})
    msg = (f'user "{user.name}" (groups={go_quote_list(user.groups)}) is attempting to grant RBAC permissions '
           "not currently held:\n" + "\n".join(described))
    if errors:
        msg += f"; resolution errors: [{', '.join(errors)}]"
    return msg
