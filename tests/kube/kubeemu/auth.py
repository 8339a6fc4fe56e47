"""Authentication (bearer tokens) and RBAC authorization.

Client certificates signed by the emulator's CA authenticate too (CN = user, O = groups), as
with the real x509 authenticator. Two kinds of token exist: the admin token written into the
kubeconfig (user
"kubernetes-admin", group system:masters: allowed everything, may impersonate), and
ServiceAccount tokens issued by the TokenRequest subresource
(POST .../serviceaccounts/NAME/token, what `kubectl create token` calls). Requests made with a
ServiceAccount token, or impersonated with Impersonate-User/Impersonate-Group, are authorized
by the RBAC objects in the store, as the real RBAC authorizer does (Roles, ClusterRoles,
RoleBindings, ClusterRoleBindings; no aggregation). So a test can run a program with exactly
the permissions deploy/ grants it and see the real 403 message when one is missing.
"""

import secrets
import threading

from . import errors

ADMIN = "kubernetes-admin"


class User:
    def __init__(self, name, groups, sa=None):
        self.name = name
        self.groups = list(groups)
        self.sa = sa  # (namespace, name) for ServiceAccounts

    @property
    def superuser(self):
        return "system:masters" in self.groups


def service_account_user(namespace, name):
    return User(f"system:serviceaccount:{namespace}:{name}",
                ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
                sa=(namespace, name))


class Authenticator:
    def __init__(self, admin_token):
        self._lock = threading.Lock()
        self._admin_token = admin_token
        self._tokens = {}  # token -> (namespace, serviceaccount name, serviceaccount uid)

    def issue(self, namespace, name, uid):
        token = "sa-" + secrets.token_hex(24)
        with self._lock:
            self._tokens[token] = (namespace, name, uid)
        return token

    def authenticate(self, header, store, peer_cert=None):
        """User for an Authorization header value or a verified client certificate, or None (401)."""
        if not header.startswith("Bearer "):
            return _certificate_user(peer_cert)
        token = header[len("Bearer "):].strip()
        if secrets.compare_digest(token, self._admin_token):
            return User(ADMIN, ["system:masters", "system:authenticated"])
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None:
            return None
        namespace, name, uid = entry
        # A token dies with its ServiceAccount, as bound tokens do.
        sa = store.objects["serviceaccounts"].get((namespace, name))
        if sa is None or sa["metadata"].get("uid") != uid:
            return None
        return service_account_user(namespace, name)


def _certificate_user(cert):
    """x509 client-certificate authentication: CN is the user, O entries the groups."""
    if not cert:
        return None
    cn, orgs = None, []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    if not cn:
        return None
    return User(cn, orgs + ["system:authenticated"])


def impersonate(user, headers):
    """The user named by Impersonate-* headers (only the admin may impersonate)."""
    name = headers.get("Impersonate-User")
    groups = headers.get_all("Impersonate-Group") or []
    if not name and not groups:
        return user
    if not user.superuser:
        raise errors.Forbidden(f'users "{name}" is forbidden: User "{user.name}" cannot impersonate '
                               f'resource "users" in API group "" at the cluster scope')
    if name and name.startswith("system:serviceaccount:") and name.count(":") == 3:
        _, _, ns, sa = name.split(":")
        out = service_account_user(ns, sa)
        out.groups = sorted(set(out.groups) | set(groups))
        return out
    return User(name or "", list(groups) + ["system:authenticated"])


def _matches(values, value):
    return "*" in values or value in values


def _rule_allows(rule, attrs):
    verb, group, resource, sub, name = (attrs["verb"], attrs["group"], attrs["resource"],
                                        attrs.get("subresource") or "", attrs.get("name") or "")
    if not _matches(rule.get("verbs") or [], verb):
        return False
    if attrs.get("path") is not None:
        urls = rule.get("nonResourceURLs") or []
        return any(u == attrs["path"] or (u.endswith("*") and attrs["path"].startswith(u[:-1])) for u in urls)
    if not _matches(rule.get("apiGroups") or [], group):
        return False
    full = f"{resource}/{sub}" if sub else resource
    resources = rule.get("resources") or []
    if not ("*" in resources or full in resources or (sub and f"*/{sub}" in resources)):
        return False
    names = rule.get("resourceNames") or []
    return not names or name in names


def _subject_matches(subject, user):
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        return user.sa is not None and (subject.get("namespace"), subject.get("name")) == user.sa
    return False


def authorize(store, user, attrs):
    """(allowed, reason) for attrs {verb, group, resource, subresource, namespace, name} or
    {verb, path} (non-resource URLs)."""
    if user.superuser:
        return True, ""
    with store.lock:
        bindings = [("ClusterRoleBinding", b) for b in store.objects["clusterrolebindings.rbac.authorization.k8s.io"].values()]
        ns = attrs.get("namespace")
        if ns:
            bindings += [("RoleBinding", b) for (bns, _), b in store.objects["rolebindings.rbac.authorization.k8s.io"].items()
                         if bns == ns]
        for kind, b in bindings:
            if not any(_subject_matches(s, user) for s in b.get("subjects") or []):
                continue
            ref = b.get("roleRef") or {}
            if ref.get("kind") == "ClusterRole":
                role = store.objects["clusterroles.rbac.authorization.k8s.io"].get((None, ref.get("name")))
            else:
                role = store.objects["roles.rbac.authorization.k8s.io"].get((b["metadata"].get("namespace"), ref.get("name")))
            if role is None:
                continue
            for rule in role.get("rules") or []:
                if _rule_allows(rule, attrs):
                    return True, (f'RBAC: allowed by {kind} "{b["metadata"]["name"]}" of '
                                  f'{ref.get("kind")} "{ref.get("name")}" to {user.name}')
    return False, ""


def forbidden(user, attrs):
    """The real 403: 'pvcs "x" is forbidden: User "u" cannot get resource "..." in API group ...'."""
    if attrs.get("path") is not None:
        return errors.Forbidden(f'forbidden: User "{user.name}" cannot {attrs["verb"]} path "{attrs["path"]}"')
    resource = attrs["resource"] + (f"/{attrs['subresource']}" if attrs.get("subresource") else "")
    if attrs.get("namespace"):
        why = (f'User "{user.name}" cannot {attrs["verb"]} resource "{resource}" in API group '
               f'"{attrs["group"]}" in the namespace "{attrs["namespace"]}"')
    else:
        why = (f'User "{user.name}" cannot {attrs["verb"]} resource "{resource}" in API group '
               f'"{attrs["group"]}" at the cluster scope')
    qualified = attrs["resource"] + (f".{attrs['group']}" if attrs["group"] else "")
    name = attrs.get("name") or ""
    details = {"kind": attrs["resource"]}
    if name:
        details["name"] = name
    if attrs["group"]:
        details["group"] = attrs["group"]
    subject = f'{qualified} "{name}"' if name else qualified
    return errors.Forbidden(f"{subject} is forbidden: {why}", details=details)
