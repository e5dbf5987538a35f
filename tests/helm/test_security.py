"""The pod runs hardened, and the NetworkPolicy lets in only Prometheus and out only what the exporter needs."""

from __future__ import annotations

from tests.helm.support import Docs, container, one


def test_security_context_is_hardened(default_docs: Docs, full_docs: Docs) -> None:
    for docs in (default_docs, full_docs):
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        ctx = container(docs)["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["privileged"] is False
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


def test_network_policy(full_docs: Docs) -> None:
    spec = one(full_docs, "NetworkPolicy")["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"][0]["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    assert spec["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    egress_ports = [rule["ports"] for rule in spec["egress"]]
    assert [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}] in egress_ports
    assert [{"port": 8283, "protocol": "TCP"}] in egress_ports
    assert [{"port": 4317, "protocol": "TCP"}] in egress_ports
