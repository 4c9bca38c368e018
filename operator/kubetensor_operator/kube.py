"""The only module that talks to the Kubernetes API: credentials, typed paths, and the few verbs used.

``load_credentials`` reads a kubeconfig (client certificates, bearer tokens) or the pod's service
account; ``connection_info`` hands the same credentials to kopf (``@kopf.on.login``) so the watches and
the operator's own requests authenticate alike. ``KubeClient`` is an async HTTP client over
``httpx``: ``get``, ``list``, ``create`` (409 raises ``KubeConflictError``), ``apply`` (server-side
apply, field manager ``kubetensor-operator``, forced: the operator owns what it sets), ``patch`` (JSON
merge patch of a few fields, such as a ledger claim's storage request), ``patch_status`` (JSON merge
patch of the status subresource), ``delete``, ``post_event`` and ``create_token``. Nothing
here logs a request or response body, so a Secret's data never reaches a log.

Called by ``handlers`` (reconciliation) and ``runner`` (installing CRDs and RBAC, the operator's token).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import kopf
import yaml

from kubetensor_operator.desired import MANAGER
from kubetensor_operator.errors import KubeApiError, KubeConfigError, KubeConflictError
from kubetensor_operator.model import GROUP, VERSION, Manifest

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_TOKEN_REREAD_SECONDS = 60.0


@dataclass(frozen=True)
class Resource:
    """A REST resource: where its objects live in the API."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
        if subresource is not None:
            base += f"/{subresource}"
        return base


SUBNETS = Resource(GROUP, VERSION, "subnets")
MINERS = Resource(GROUP, VERSION, "miners")
VALIDATORS = Resource(GROUP, VERSION, "validators")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
SERVICES = Resource("", "v1", "services")
SECRETS = Resource("", "v1", "secrets")
CONFIGMAPS = Resource("", "v1", "configmaps")
PVCS = Resource("", "v1", "persistentvolumeclaims")
PODS = Resource("", "v1", "pods")
EVENTS = Resource("", "v1", "events")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts")
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False)
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", namespaced=False)
CLUSTER_ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False)
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings")

_BY_KIND: dict[tuple[str, str], Resource] = {
    (f"{GROUP}/{VERSION}", "Subnet"): SUBNETS,
    (f"{GROUP}/{VERSION}", "Miner"): MINERS,
    (f"{GROUP}/{VERSION}", "Validator"): VALIDATORS,
    ("apps/v1", "Deployment"): DEPLOYMENTS,
    ("v1", "Service"): SERVICES,
    ("v1", "Secret"): SECRETS,
    ("v1", "ConfigMap"): CONFIGMAPS,
    ("v1", "PersistentVolumeClaim"): PVCS,
    ("v1", "Namespace"): NAMESPACES,
    ("v1", "ServiceAccount"): SERVICE_ACCOUNTS,
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): CRDS,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): CLUSTER_ROLES,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): CLUSTER_ROLE_BINDINGS,
    ("rbac.authorization.k8s.io/v1", "Role"): ROLES,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ROLE_BINDINGS,
}


def resource_for(manifest: Mapping[str, Any]) -> Resource:
    """The resource of an object, from its apiVersion and kind (only the kinds the operator handles)."""
    key = (str(manifest.get("apiVersion")), str(manifest.get("kind")))
    try:
        return _BY_KIND[key]
    except KeyError:
        raise ValueError(f"the operator does not handle {key[0]} {key[1]}") from None


# -- credentials --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """How to reach and authenticate to one API server (secrets are kept out of ``repr``)."""

    server: str
    ca_data: bytes | None = None
    insecure: bool = False
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    cert_data: bytes | None = field(default=None, repr=False)
    key_data: bytes | None = field(default=None, repr=False)
    namespace: str | None = None

    def current_token(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token


def _data_or_file(entry: Mapping[str, Any], key: str, *, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        path = Path(entry[key])
        return (path if path.is_absolute() else base / path).read_bytes()
    return None


def load_credentials(kubeconfig: Path | None = None) -> Credentials:
    """Credentials from ``kubeconfig``, else the pod's service account, else $KUBECONFIG/~/.kube/config."""
    if kubeconfig is None:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and (SERVICE_ACCOUNT_DIR / "token").exists():
            return _in_cluster()
        kubeconfig = Path(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]).expanduser()
    try:
        config = yaml.safe_load(kubeconfig.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise KubeConfigError(f"cannot read kubeconfig {kubeconfig}: {error}") from None
    try:
        context_name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config.get("users", []) if u["name"] == context["user"])
    except (KeyError, StopIteration, TypeError) as error:
        raise KubeConfigError(f"kubeconfig {kubeconfig} has no usable current context ({error!r})") from None
    if "exec" in user or "auth-provider" in user:
        raise KubeConfigError(
            f"kubeconfig {kubeconfig}: exec and auth-provider credentials are not supported; "
            "use client certificates or a token"
        )
    base = kubeconfig.parent
    token_file = Path(user["tokenFile"]) if user.get("tokenFile") else None
    return Credentials(
        server=str(cluster["server"]).rstrip("/"),
        ca_data=_data_or_file(cluster, "certificate-authority", base=base),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        token=user.get("token"),
        token_file=token_file,
        cert_data=_data_or_file(user, "client-certificate", base=base),
        key_data=_data_or_file(user, "client-key", base=base),
        namespace=context.get("namespace"),
    )


def _in_cluster() -> Credentials:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    namespace_file = SERVICE_ACCOUNT_DIR / "namespace"
    return Credentials(
        server=server,
        ca_data=(SERVICE_ACCOUNT_DIR / "ca.crt").read_bytes(),
        token_file=SERVICE_ACCOUNT_DIR / "token",
        namespace=namespace_file.read_text().strip() if namespace_file.exists() else None,
    )


def connection_info(credentials: Credentials) -> kopf.ConnectionInfo:
    """The same credentials for kopf's own API client (returned from ``@kopf.on.login``)."""
    token = credentials.current_token()
    return kopf.ConnectionInfo(
        server=credentials.server,
        ca_data=credentials.ca_data,
        insecure=credentials.insecure or None,
        scheme="Bearer" if token else None,
        token=token,
        certificate_data=credentials.cert_data,
        private_key_data=credentials.key_data,
        default_namespace=credentials.namespace,
    )


def ssl_context(credentials: Credentials) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if credentials.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif credentials.ca_data is not None:
        context.load_verify_locations(cadata=credentials.ca_data.decode())
    if credentials.cert_data is not None and credentials.key_data is not None:
        # ssl loads a client key only from files: write them to a private directory, load, remove.
        with tempfile.TemporaryDirectory(prefix="kt-operator-") as directory:
            cert, key = Path(directory) / "client.crt", Path(directory) / "client.key"
            for path, data in ((cert, credentials.cert_data), (key, credentials.key_data)):
                path.touch(mode=0o600)
                path.write_bytes(data)
            context.load_cert_chain(str(cert), str(key))
    return context


# -- the client ---------------------------------------------------------------------------------------


def _status_error(method: str, path: str, response: httpx.Response) -> KubeApiError:
    try:
        body = response.json()
        reason, message = str(body.get("reason", "")), str(body.get("message", ""))
    except ValueError:
        reason, message = response.reason_phrase, response.text[:500]
    error_type = KubeConflictError if response.status_code == 409 else KubeApiError
    return error_type(method=method, path=path, status=response.status_code, reason=reason, message=message)


class KubeClient:
    """Async requests to one API server with one set of credentials."""

    def __init__(self, credentials: Credentials, *, timeout: float = 30.0, max_connections: int = 64) -> None:
        self.credentials = credentials
        self._http = httpx.AsyncClient(
            base_url=credentials.server,
            verify=ssl_context(credentials),
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        self._token: str | None = None
        self._token_read = 0.0

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.credentials.token_file is not None:
            # Projected service-account tokens rotate: re-read the file now and then.
            if self._token is None or time.monotonic() - self._token_read > _TOKEN_REREAD_SECONDS:
                self._token = self.credentials.current_token()
                self._token_read = time.monotonic()
        else:
            self._token = self.credentials.token
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> httpx.Response:
        content = None if body is None else json.dumps(body).encode()
        try:
            response = await self._http.request(
                method,
                path,
                params=params,
                content=content,
                headers=self._headers(content_type if content is not None else None),
            )
        except httpx.TransportError as error:
            raise KubeApiError(
                method=method, path=path, status=0, reason=type(error).__name__, message=str(error)
            ) from None
        if response.status_code >= 400:
            raise _status_error(method, path, response)
        return response

    async def get(self, resource: Resource, namespace: str | None, name: str) -> Manifest | None:
        """The object, or None when it does not exist."""
        try:
            response = await self._request("GET", resource.path(namespace, name))
        except KubeApiError as error:
            if error.status == 404:
                return None
            raise
        found: Manifest = response.json()
        return found

    async def list(
        self, resource: Resource, namespace: str | None, *, label_selector: str | None = None
    ) -> list[Manifest]:
        params = {"labelSelector": label_selector} if label_selector else None
        response = await self._request("GET", resource.path(namespace), params=params)
        items: list[Manifest] = response.json().get("items", [])
        return items

    async def create(self, manifest: Manifest) -> Manifest:
        """POST the object; ``KubeConflictError`` when it exists already (nothing is overwritten)."""
        resource = resource_for(manifest)
        namespace = manifest["metadata"].get("namespace")
        response = await self._request("POST", resource.path(namespace), body=manifest)
        created: Manifest = response.json()
        return created

    async def apply(self, manifest: Manifest, *, force: bool = True) -> Manifest:
        """Server-side apply ``manifest`` as the operator's field manager; the object as stored."""
        resource = resource_for(manifest)
        meta = manifest["metadata"]
        response = await self._request(
            "PATCH",
            resource.path(meta.get("namespace"), meta["name"]),
            params={"fieldManager": MANAGER, "force": "true" if force else "false"},
            body=manifest,
            content_type="application/apply-patch+yaml",
        )
        applied: Manifest = response.json()
        return applied

    async def patch(
        self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> Manifest:
        """JSON merge patch of the object (what ``patch`` names, nothing else); the object as stored."""
        response = await self._request(
            "PATCH",
            resource.path(namespace, name),
            params={"fieldManager": MANAGER},
            body=dict(patch),
            content_type="application/merge-patch+json",
        )
        patched: Manifest = response.json()
        return patched

    async def patch_status(
        self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> None:
        """JSON merge patch of the status subresource (``None`` values delete keys)."""
        await self._request(
            "PATCH",
            resource.path(namespace, name, "status"),
            body={"status": dict(patch)},
            content_type="application/merge-patch+json",
        )

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        """Delete the object (background propagation); False when it did not exist."""
        try:
            await self._request(
                "DELETE", resource.path(namespace, name), body={"propagationPolicy": "Background"}
            )
        except KubeApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def post_event(
        self, involved: Mapping[str, Any], *, warning: bool, reason: str, message: str
    ) -> None:
        """Record a core/v1 Event about ``involved`` (an object as read from the API)."""
        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": "Warning" if warning else "Normal",
            "reason": reason,
            "message": message[:1024],
            "source": {"component": MANAGER},
            "reportingComponent": f"{GROUP}/operator",
            "reportingInstance": os.uname().nodename,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._request("POST", EVENTS.path(meta["namespace"]), body=event)

    async def create_token(self, namespace: str, service_account: str, *, seconds: int) -> str:
        """A bound token of ``service_account`` valid for ``seconds`` (TokenRequest)."""
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        }
        response = await self._request(
            "POST", SERVICE_ACCOUNTS.path(namespace, service_account, "token"), body=request
        )
        token: str = response.json()["status"]["token"]
        return token

    async def apply_all(self, manifests: Iterable[Manifest]) -> None:
        """Server-side apply each object in order (CRDs and RBAC at install time)."""
        for manifest in manifests:
            await self.apply(manifest)

    async def crd_established(self, name: str) -> bool:
        crd = await self.get(CRDS, None, name)
        conditions = (crd or {}).get("status", {}).get("conditions", [])
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
