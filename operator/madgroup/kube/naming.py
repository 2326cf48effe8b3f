"""Names, labels and API paths of the objects the operator owns."""

from __future__ import annotations

from dataclasses import dataclass

from madgroup import topology
from madgroup.spec import InvalidSpecError

MANAGER = "madgroup-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
APP = "madgroup"

# A StatefulSet's pods get a ``controller-revision-hash`` label of <name>-<10 chars>, which
# must fit in 63 characters; the longest suffix we add is "-sequential-thinking".
MAX_GROUP_NAME = 63 - 11 - len("-sequential-thinking")


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the API."""

    kind: str
    api_version: str
    plural: str

    def path(self, namespace: str, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{path}/{name}" if name else path


SECRET = Kind("Secret", "v1", "secrets")
SERVICE = Kind("Service", "v1", "services")
PVC = Kind("PersistentVolumeClaim", "v1", "persistentvolumeclaims")
DEPLOYMENT = Kind("Deployment", "apps/v1", "deployments")
STATEFULSET = Kind("StatefulSet", "apps/v1", "statefulsets")
NETWORKPOLICY = Kind("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies")
CERTIFICATE = Kind("Certificate", "cert-manager.io/v1", "certificates")
CONFIGMAP = Kind("ConfigMap", "v1", "configmaps")
PDB = Kind("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets")
CRONJOB = Kind("CronJob", "batch/v1", "cronjobs")
HPA = Kind("HorizontalPodAutoscaler", "autoscaling/v2", "horizontalpodautoscalers")
KINDS = {
    k.kind: k
    for k in (
        SECRET,
        SERVICE,
        PVC,
        DEPLOYMENT,
        STATEFULSET,
        NETWORKPOLICY,
        CERTIFICATE,
        CONFIGMAP,
        PDB,
        CRONJOB,
        HPA,
    )
}


def storage_class_path(name: str) -> str:
    """A StorageClass (cluster-scoped)."""
    return f"/apis/storage.k8s.io/v1/storageclasses/{name}"


def check_group_name(group: str) -> None:
    """Every child name derives from the group's name; refuse one that cannot fit."""
    if len(group) > MAX_GROUP_NAME:
        raise InvalidSpecError(
            f"metadata.name {group!r} is {len(group)} characters; a MadGroup name can have at "
            f"most {MAX_GROUP_NAME} so that its children's names stay valid DNS labels"
        )


def child_name(group: str, component: str) -> str:
    """``<group>-<component as a DNS label>``: Service, workload and Service DNS name."""
    return f"{group}-{topology.component(component).dns_name}"


def password_secret_name(group: str) -> str:
    return f"{group}-redis-password"


def bus_secret_name(group: str, user: str) -> str:
    """The generated Secret of one MAD's bus password."""
    return f"{group}-{topology.component(user).dns_name}-bus"


def ca_secret_name(group: str) -> str:
    """The group's private CA, when the operator makes the certificates itself."""
    return f"{group}-ca"


def tls_secret_name(group: str, component: str) -> str:
    """The TLS Secret of a component that serves TLS (cert-manager's layout)."""
    return f"{child_name(group, component)}-tls"


def internal_token_secret_name(group: str) -> str:
    """The generated Secret of the group's internal credential."""
    return f"{group}-internal-token"


def metrics_token_secret_name(group: str) -> str:
    """The generated Secret of the group's metrics credential (what a PodMonitor presents)."""
    return f"{group}-metrics-token"


def files_name(group: str, component: str) -> str:
    """The ConfigMap of the files a declaration gives a component."""
    return f"{child_name(group, component)}-files"


def network_policy_name(group: str) -> str:
    return f"{group}-internal"


def group_labels(group: str) -> dict[str, str]:
    """Labels every pod of the group carries (what the NetworkPolicy selects)."""
    return {LABEL_NAME: APP, LABEL_INSTANCE: group}


def selector_labels(group: str, component: str) -> dict[str, str]:
    return {**group_labels(group), LABEL_COMPONENT: topology.component(component).dns_name}


def labels(group: str, component: str | None = None) -> dict[str, str]:
    base = selector_labels(group, component) if component else group_labels(group)
    return {**base, LABEL_MANAGED_BY: MANAGER, LABEL_PART_OF: APP}
