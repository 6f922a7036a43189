//! `cluster`: of Talos's cluster section Keel reads `cluster.etcd` and
//! `cluster.controlPlane.endpoint`, plus the Keel extensions of a static
//! etcd cluster.
//!
//! Without a member list the cluster forms as in Talos: one bootstrap
//! request, then every other node joins as a learner through the
//! control-plane endpoint, the VIPs or the peers it knew
//! (`crate::etcd::join`). The static alternative writes the membership
//! down, with keys Talos does not have; each is marked **Keel extension**
//! below.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::types::{CertPem, EndpointUrl, KeyPem, MemberName, PeerUrl, SubnetFilter};
use super::unsupported::section;

section! {
    /// `cluster`.
    #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Cluster {
        pub etcd: Option<Etcd>,
        /// Talos `controlPlane`: Keel reads its `endpoint`.
        pub control_plane: Option<ControlPlane>,
    }
    unsupported {
        id = "id",
        secret = "secret",
        cluster_name = "clusterName",
        network = "network",
        token = "token",
        aescbc_encryption_secret = "aescbcEncryptionSecret",
        secretbox_encryption_secret = "secretboxEncryptionSecret",
        ca = "ca",
        aggregator_ca = "aggregatorCA",
        service_account = "serviceAccount",
        api_server = "apiServer",
        controller_manager = "controllerManager",
        proxy = "proxy",
        scheduler = "scheduler",
        discovery = "discovery",
        core_dns = "coreDNS",
        external_cloud_provider = "externalCloudProvider",
        extra_manifests = "extraManifests",
        extra_manifest_headers = "extraManifestHeaders",
        inline_manifests = "inlineManifests",
        admin_kubeconfig = "adminKubeconfig",
        allow_scheduling_on_control_planes = "allowSchedulingOnControlPlanes",
        accepted_cas = "acceptedCAs",
    }
}

section! {
    /// `cluster.controlPlane`.
    #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct ControlPlane {
        /// Talos `endpoint`: where the cluster's API answers, usually the
        /// VIP (`https://10.5.0.100:6443`). A node without an etcd member
        /// list looks for a running member at its host, port 2379, to
        /// join the cluster.
        pub endpoint: Option<EndpointUrl>,
    }
    unsupported {
        local_api_server_port = "localAPIServerPort",
    }
}

/// The default of [`Etcd::initial_cluster_token`].
pub const DEFAULT_INITIAL_CLUSTER_TOKEN: &str = "keel";

fn default_token() -> String {
    DEFAULT_INITIAL_CLUSTER_TOKEN.to_owned()
}

section! {
    /// `cluster.etcd`.
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Etcd {
        /// Talos `ca`: the etcd CA, `crt` and `key` base64-encoded PEM.
        pub ca: Option<CertificateAuthority>,
        /// Talos `extraArgs`: extra etcd flags, `name: value` for
        /// `--name=value`.
        #[serde(default)]
        pub extra_args: BTreeMap<String, String>,
        /// Talos `advertisedSubnets`: which node address etcd advertises
        /// (`!CIDR` excludes).
        #[serde(default)]
        pub advertised_subnets: Vec<SubnetFilter>,
        /// Talos `listenSubnets`: which node addresses etcd listens on
        /// (`!CIDR` excludes).
        #[serde(default)]
        pub listen_subnets: Vec<SubnetFilter>,
        /// **Keel extension** `memberName`: this node's etcd member name.
        /// Default: `machine.network.hostname`. Must be a key of
        /// `initialCluster` when that is set.
        pub member_name: Option<MemberName>,
        /// **Keel extension** `initialCluster`: every founding member, name
        /// → peer URL (`node1: https://10.5.0.11:2380`), i.e. etcd's
        /// `--initial-cluster`; the founding members form the cluster by
        /// themselves, and a list of one is a single-node control plane.
        /// Default: empty, the Talos way: the cluster is formed by one
        /// `bootstrap` request, and every other node joins it as a learner
        /// through `cluster.controlPlane.endpoint`, a VIP or a known peer.
        #[serde(default)]
        pub initial_cluster: BTreeMap<MemberName, PeerUrl>,
        /// **Keel extension** `initialClusterToken`: etcd's
        /// `--initial-cluster-token`. Default `keel`.
        #[serde(default = "default_token")]
        pub initial_cluster_token: String,
        /// **Keel extension** `peer`: the peer TLS certificate and key,
        /// base64-encoded PEM like `ca`. Default: none.
        pub peer: Option<CertificateAndKey>,
        /// **Keel extension** `server`: the client-facing TLS certificate
        /// and key, base64-encoded PEM like `ca`. Default: none.
        pub server: Option<CertificateAndKey>,
        /// **Keel extension** `clientOnNodeAddress`: also serve clients on
        /// the node's addresses (etcd listens on the wildcard address, so
        /// a VIP this node holds answers too), not only on loopback.
        /// Default: `true` with TLS (as Talos's etcd listens on every
        /// address; joining nodes and rejoin need a member's client API),
        /// `false` with `allowInsecure` (plaintext stays on loopback).
        /// Read it through [`Etcd::clients_on_node_address`].
        pub client_on_node_address: Option<bool>,
        /// **Keel extension** `allowInsecure`: run etcd without TLS even
        /// though it listens on a non-loopback address (its peers do).
        /// Without a CA this must be set, on purpose; every boot says so
        /// in a warning. Default `false`.
        #[serde(default)]
        pub allow_insecure: bool,
    }
    unsupported {
        image = "image",
    }
}

impl Etcd {
    /// `clientOnNodeAddress` with its default (see the field).
    pub fn clients_on_node_address(&self) -> bool {
        self.client_on_node_address.unwrap_or(!self.allow_insecure)
    }
}

/// A CA as Talos writes it: `crt` and, where this node signs, `key`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateAuthority {
    pub crt: CertPem,
    #[serde(default, deserialize_with = "super::unsupported::empty_as_none")]
    pub key: Option<KeyPem>,
}

/// A certificate with its private key, both base64-encoded PEM.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateAndKey {
    pub crt: CertPem,
    pub key: KeyPem,
}
