//! `rkube`: the whole cluster in one binary. This crate wires components
//! together; it holds no cluster logic of its own.

mod datastore;
mod join;
mod pki;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use datastore::Datastore;

/// mimalloc: the API server and the components allocate and free many small
/// JSON values per request; glibc's malloc spent a fifth of the server's CPU
/// on that under load (bench/scheduler.sh), mimalloc much less. Built with
/// `no_thp`: otherwise mimalloc asks for transparent huge pages on its
/// arena, and every 2 MiB region it touches becomes resident — 26 of the
/// idle server's 31 MiB of anonymous memory (crates/rkube/benches/apiserver.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Kubernetes API level rkube implements.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

#[derive(Parser, Debug)]
#[command(
    name = "rkube",
    version,
    about = "A Kubernetes-compatible cluster in one binary"
)]
struct Cli {
    /// Log filter, e.g. `info` or `rkube=debug,store=trace` (also RUST_LOG).
    #[arg(long, global = true, env = "RKUBE_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at startup: the size of the server's flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run the control plane (and a local node unless --disable-agent).
    Server(ServerArgs),
    /// Run a node agent that joins a server.
    Agent(AgentArgs),
    /// Print the version.
    Version,
}

#[derive(Args, Debug)]
struct ServerArgs {
    /// Folder for the datastore, certificates and node state.
    #[arg(
        long,
        short = 'd',
        env = "RKUBE_DATA_DIR",
        default_value = "/var/lib/rkube"
    )]
    data_dir: PathBuf,
    /// Port of the HTTPS API.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Address the API listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: String,
    /// Address published as the `kubernetes` Service's endpoint (what pods
    /// reach the API at); default: --bind-address unless it is 0.0.0.0,
    /// else --node-ip or the host's primary address.
    #[arg(long)]
    advertise_address: Option<std::net::IpAddr>,
    /// Also write the admin kubeconfig here.
    #[arg(long, short = 'o', env = "RKUBE_KUBECONFIG_OUTPUT")]
    write_kubeconfig: Option<PathBuf>,
    /// Empty: embedded SQLite in the data dir. `sqlite://PATH`, or etcd as
    /// `etcd://HOST:2379[,HOST:2379]` or `http(s)://HOST:2379[,...]`.
    #[arg(long, env = "RKUBE_DATASTORE_ENDPOINT", default_value = "")]
    datastore_endpoint: String,
    /// How often old datastore history is compacted; about this much
    /// history is kept for watchers to resume from.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    etcd_compaction_interval: Duration,
    /// Shared secret nodes use to join; generated on first start if unset.
    #[arg(long, env = "RKUBE_TOKEN")]
    token: Option<String>,
    /// Name of the local node (default: the hostname).
    #[arg(long, env = "RKUBE_NODE_NAME")]
    node_name: Option<String>,
    /// Run only the control plane, no local node.
    #[arg(long)]
    disable_agent: bool,
    #[command(flatten)]
    node: NodeArgs,
    /// Do not run the controllers (replicasets, deployments, garbage
    /// collection, namespaces, ...).
    #[arg(long)]
    disable_controller_manager: bool,
    /// Do not run the scheduler.
    #[arg(long)]
    disable_scheduler: bool,
    /// Cluster domain the DNS server answers for.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Serve cluster DNS on this address (default: the node IP, any free
    /// port). Unless it is a loopback address, the server publishes itself
    /// as kube-system/kube-dns at the tenth address of the service range
    /// (10.43.0.10), which the service proxy forwards to it.
    #[arg(long)]
    dns_listen: Option<std::net::SocketAddr>,
    /// Do not run the cluster DNS server.
    #[arg(long)]
    disable_dns: bool,
    /// Do not run the ingress controller (Ingresses of class rkube).
    #[arg(long)]
    disable_ingress: bool,
    /// The ingress controller's plain HTTP address.
    #[arg(long, default_value = "0.0.0.0:80")]
    ingress_http_listen: std::net::SocketAddr,
    /// The ingress controller's HTTPS address (certificates from the
    /// Ingresses' spec.tls Secrets, chosen by SNI).
    #[arg(long, default_value = "0.0.0.0:443")]
    ingress_https_listen: std::net::SocketAddr,
    /// A KubeSchedulerConfiguration file (profiles, plugins, weights,
    /// percentageOfNodesToScore).
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
    /// How long a node may go without a heartbeat before it is marked
    /// Unknown and tainted unreachable.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// tolerationSeconds new pods get for node.kubernetes.io/not-ready.
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// tolerationSeconds new pods get for node.kubernetes.io/unreachable.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    /// Finished pods kept before the oldest are garbage collected.
    #[arg(long, default_value_t = 12_500)]
    terminated_pod_gc_threshold: usize,
    /// Pod network range; each node gets a /24 of it.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// Range ClusterIPs are allocated from.
    #[arg(long, default_value = DEFAULT_SERVICE_CIDR)]
    service_cidr: String,
    /// Extra host names or IPs for the serving certificate.
    #[arg(long, value_delimiter = ',')]
    tls_san: Vec<String>,
    /// Static bearer tokens, CSV `token,user,uid[,"group1,group2"]`.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// An audit.k8s.io/v1 Policy: which requests are audited, at which
    /// level (needs --audit-log-path or --audit-webhook-config-file).
    #[arg(long)]
    audit_policy_file: Option<PathBuf>,
    /// Where audit events go, one JSON object per line (`-`: standard
    /// output).
    #[arg(long, requires = "audit_policy_file")]
    audit_log_path: Option<String>,
    /// Megabytes the audit log may reach before it is rotated (renamed
    /// with a timestamp); 0: never.
    #[arg(long = "audit-log-maxsize", default_value_t = 0)]
    audit_log_maxsize: u64,
    /// Rotated audit logs kept (the newest); 0: all.
    #[arg(long = "audit-log-maxbackup", default_value_t = 0)]
    audit_log_maxbackup: usize,
    /// Days a rotated audit log is kept; 0: no limit.
    #[arg(long = "audit-log-maxage", default_value_t = 0)]
    audit_log_maxage: u64,
    /// A kubeconfig naming the webhook audit events are POSTed to, in
    /// batches (audit.k8s.io/v1 EventList).
    #[arg(long, requires = "audit_policy_file")]
    audit_webhook_config_file: Option<PathBuf>,
    /// Only `batch` (requests never wait for the webhook).
    #[arg(long, default_value = "batch", value_parser = ["batch"])]
    audit_webhook_mode: String,
    /// Events per webhook request at most.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..))]
    audit_webhook_batch_max_size: u32,
    /// How long a batch waits for more events before it is sent.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    audit_webhook_batch_max_wait: std::time::Duration,
    /// The first wait before a failed send is retried (doubling).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    audit_webhook_initial_backoff: std::time::Duration,
}

#[derive(Args, Debug)]
struct AgentArgs {
    /// The server to join, e.g. https://10.0.0.1:6443.
    #[arg(long, short = 's', env = "RKUBE_URL")]
    server: String,
    /// The server's join token (<data-dir>/server/token on the server).
    #[arg(long, short = 't', env = "RKUBE_TOKEN")]
    token: String,
    #[arg(
        long,
        short = 'd',
        env = "RKUBE_DATA_DIR",
        default_value = "/var/lib/rkube"
    )]
    data_dir: PathBuf,
    /// Node name (with --simulated-nodes: the prefix of the node names).
    #[arg(long, env = "RKUBE_NODE_NAME")]
    node_name: Option<String>,
    /// Run this many simulated nodes (no containers) instead of a real one.
    #[arg(long)]
    simulated_nodes: Option<usize>,
    /// Cluster domain pods search in their resolv.conf.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    #[command(flatten)]
    node: NodeArgs,
}

/// Settings of a real node, shared by `server` (its local node) and `agent`.
#[derive(Args, Debug)]
struct NodeArgs {
    /// CRI socket of an existing container runtime (default: the agent
    /// runs its own containerd).
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// Name of the Linux bridge pods are attached to.
    #[arg(long, default_value = "rkube0")]
    cni_bridge: String,
    /// Masquerade pod traffic leaving the pod network (`--pod-masquerade=false`
    /// keeps pod source addresses, e.g. in tests that must not route out).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pod_masquerade: bool,
    /// Nameserver pods with dnsPolicy ClusterFirst get (default: the tenth
    /// address of the service range, 10.43.0.10).
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<std::net::IpAddr>,
    /// The node's own address (default: the address of the default route's
    /// interface).
    #[arg(long)]
    node_ip: Option<std::net::Ipv4Addr>,
    /// Do not run the service proxy (nftables rules for Services) on this
    /// node.
    #[arg(long)]
    disable_proxy: bool,
    /// Do not install routes to the other nodes' pod ranges (host-gw:
    /// via each node's InternalIP, which must share a link with this node).
    #[arg(long)]
    disable_pod_routes: bool,
    /// Do not enforce NetworkPolicies (nftables rules for this node's
    /// pods) on this node.
    #[arg(long)]
    disable_network_policy: bool,
    /// Port of the node's streaming server (logs, exec, attach,
    /// port-forward), published in the Node's daemonEndpoints; 0: any
    /// free port.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Image filesystem usage (percent) above which unused images are
    /// removed.
    #[arg(long, default_value_t = 85)]
    image_gc_high_threshold: u8,
    /// Usage (percent) image garbage collection frees down to.
    #[arg(long, default_value_t = 80)]
    image_gc_low_threshold: u8,
    /// How long an unused image is kept at least.
    #[arg(long, default_value = "2m", value_parser = parse_duration_or_zero)]
    image_minimum_gc_age: Duration,
    /// Directory of static pod manifests (one Pod per *.yaml, *.yml or
    /// *.json file), run by the agent and shown as mirror pods (default:
    /// <data-dir>/agent/pod-manifests; created if missing).
    #[arg(long)]
    pod_manifest_path: Option<PathBuf>,
    /// Hard eviction thresholds, as the kubelet's: comma-separated
    /// `signal<quantity` or `signal<percent%` (signals: memory.available,
    /// nodefs.available, nodefs.inodesFree, imagefs.available,
    /// imagefs.inodesFree, pid.available); met, the node evicts a pod at
    /// once. Replaces the default list entirely.
    #[arg(long, default_value = agent::eviction::DEFAULT_HARD)]
    eviction_hard: String,
    /// Soft eviction thresholds (same syntax): pods are evicted once one
    /// has been met for its --eviction-soft-grace-period.
    #[arg(long, default_value = "")]
    eviction_soft: String,
    /// Grace periods of the soft thresholds, e.g. `memory.available=1m30s`.
    #[arg(long, default_value = "")]
    eviction_soft_grace_period: String,
    /// How long a pressure condition stays True after its thresholds stop
    /// being met.
    #[arg(long, default_value = "5m", value_parser = api::duration::parse)]
    eviction_pressure_transition_period: Duration,
    /// Longest grace period (seconds) a soft eviction gives a pod; 0 or
    /// less: the pod's own terminationGracePeriodSeconds.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    eviction_max_pod_grace_period: i64,
    /// Minimum reclaims, as the kubelet's: `signal=quantity` or
    /// `signal=percent%`, comma-separated; a threshold once met holds
    /// until that much more than it is available.
    #[arg(long, default_value = "")]
    eviction_minimum_reclaim: String,
    /// A k3s-style registries.yaml (mirrors, auth, TLS) for the node's
    /// own containerd; a missing file is none.
    #[arg(long, default_value = "/etc/rkube/registries.yaml")]
    private_registry: PathBuf,
    /// Resources kept for Kubernetes' own daemons, as the kubelet's:
    /// `cpu=100m,memory=100Mi,ephemeral-storage=1Gi,pid=1000`.
    #[arg(long, default_value = "")]
    kube_reserved: String,
    /// Resources kept for the system's daemons (same syntax).
    #[arg(long, default_value = "")]
    system_reserved: String,
}

impl NodeArgs {
    /// The eviction settings; an error names the flag that is wrong.
    fn eviction(&self) -> anyhow::Result<agent::eviction::Config> {
        agent::eviction::Config::new(
            &self.eviction_hard,
            &self.eviction_soft,
            &self.eviction_soft_grace_period,
            &self.eviction_minimum_reclaim,
            self.eviction_pressure_transition_period,
            self.eviction_max_pod_grace_period,
        )
        .map_err(|e| anyhow::anyhow!("invalid eviction settings: {e}"))
    }

    /// `--kube-reserved` plus `--system-reserved`.
    fn reserved(&self) -> anyhow::Result<std::collections::BTreeMap<String, i128>> {
        let mut sum = agent::kubelet::parse_reserved("--kube-reserved", &self.kube_reserved)
            .map_err(|e| anyhow::anyhow!(e))?;
        for (k, v) in agent::kubelet::parse_reserved("--system-reserved", &self.system_reserved)
            .map_err(|e| anyhow::anyhow!(e))?
        {
            *sum.entry(k).or_insert(0) += v;
        }
        Ok(sum)
    }

    fn config(
        &self,
        name: String,
        data_dir: PathBuf,
        cluster_domain: &str,
        service_cidr: &str,
    ) -> agent::Config {
        let mut config = agent::Config::new(name, data_dir);
        config.container_runtime_endpoint = self.container_runtime_endpoint.clone();
        config.cni_bridge = self.cni_bridge.clone();
        config.masquerade = self.pod_masquerade;
        config.cluster_domain = cluster_domain.to_owned();
        config.cluster_dns = if self.cluster_dns.is_empty() {
            nth_service_ip(service_cidr, 10).into_iter().collect()
        } else {
            self.cluster_dns.clone()
        };
        if self.node_ip.is_some() {
            config.node_ip = self.node_ip;
        }
        config.kubelet_port = self.kubelet_port;
        config.image_gc = agent::image_gc::Policy {
            high_threshold_percent: self.image_gc_high_threshold,
            low_threshold_percent: self.image_gc_low_threshold,
            min_age: self.image_minimum_gc_age,
        };
        config.pod_manifest_path = self.pod_manifest_path.clone();
        config.private_registry = Some(self.private_registry.clone());
        config
    }

    /// The service proxy's settings for this node, unless disabled. Its
    /// nftables table is named after the pod bridge, so nodes sharing a
    /// host (tests) keep apart.
    fn proxy_config(&self, config: &agent::Config) -> Option<net::proxy::Config> {
        (!self.disable_proxy).then(|| net::proxy::Config {
            node_name: config.node_name.clone(),
            table: format!("{}-proxy", self.cni_bridge),
            bridge: Some(self.cni_bridge.clone()),
        })
    }

    /// NetworkPolicy enforcement's settings for this node, unless
    /// disabled; its tables are named after the pod bridge too.
    fn netpol_config(&self, config: &agent::Config) -> Option<net::netpol::Config> {
        (!self.disable_network_policy).then(|| net::netpol::Config {
            node_name: config.node_name.clone(),
            table: format!("{}-policy", self.cni_bridge),
            bridge: self.cni_bridge.clone(),
        })
    }

    /// The streaming server's TLS: a self-signed serving certificate in
    /// the data dir; clients must show a certificate of `client_ca_pem`.
    fn kubelet_tls(
        config: &agent::Config,
        client_ca_pem: &str,
    ) -> anyhow::Result<agent::server::TlsConfig> {
        let (cert_pem, key_pem) = pki::kubelet_serving(
            &config.data_dir,
            &config.node_name,
            config.node_ip.map(std::net::IpAddr::V4),
        )?;
        Ok(agent::server::TlsConfig {
            cert_pem,
            key_pem,
            client_ca_pem: client_ca_pem.to_owned(),
        })
    }
}

/// [`parse_duration`], also accepting `0` and `0s`.
fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "0" | "0s" => Ok(Duration::ZERO),
        other => parse_duration(other),
    }
}

/// Parses a positive Go duration: `300ms`, `90s`, `5m`, `1h30m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = api::duration::parse(s)?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(d)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Version => {
            println!(
                "rkube version v{} (Kubernetes {KUBERNETES_VERSION})",
                env!("CARGO_PKG_VERSION")
            );
            Ok(())
        }
        Command::Server(args) => tokio_main(server(args)),
        Command::Agent(args) => tokio_main(agent(args)),
    }
}

fn tokio_main(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Store reads run on the blocking pool; a burst of them (every
        // watch cache listing at start) would otherwise spawn a thread, and
        // a thread's stack and allocator heap, per read.
        .max_blocking_threads(16)
        .build()?
        .block_on(fut)
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    // Bad node flags fail before anything starts.
    let eviction = args.node.eviction()?;
    let reserved = args.node.reserved()?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let datastore = Datastore::parse(&args.datastore_endpoint, &args.data_dir)?;
    tracing::info!(?datastore, "opening datastore");
    let store = datastore.open().await?;
    let revision = store.current_revision().await?;
    tracing::info!(revision, "datastore ready");
    let _compactor = store::Compactor::start(
        store.clone(),
        store::CompactorConfig {
            interval: args.etcd_compaction_interval,
        },
    );
    apiserver::set_default_toleration_seconds(
        args.default_not_ready_toleration_seconds,
        args.default_unreachable_toleration_seconds,
    );
    apiserver::bootstrap(&store)
        .await
        .map_err(|e| anyhow::anyhow!("creating system namespaces: {e}"))?;

    let pki = pki::ensure(&pki::PkiConfig {
        data_dir: &args.data_dir,
        sans: &args.tls_san,
        api_service_ip: first_service_ip(&args.service_cidr),
        token: args.token.as_deref(),
    })?;
    join::write_node_token(&args.data_dir, &pki.ca_cert, &pki.token)?;
    let url = format!("https://127.0.0.1:{}", args.https_listen_port);
    let kubeconfig = pki::admin_kubeconfig(&pki, &url);
    pki::write_kubeconfig(&args.data_dir.join("kubeconfig.yaml"), &kubeconfig)?;
    if let Some(path) = &args.write_kubeconfig {
        pki::write_kubeconfig(path, &kubeconfig)?;
    }

    let mut authn = apiserver::auth::Authenticator::default();
    authn.add_token(
        pki.token.clone(),
        apiserver::auth::User::new("rkube:node", &["system:nodes"]),
    );
    authn.set_service_account_issuer(
        apiserver::sa_token::TokenIssuer::from_pem(&pki.service_account_key)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    if let Some(path) = &args.token_auth_file {
        authn
            .load_token_file(path)
            .with_context(|| format!("reading --token-auth-file {}", path.display()))?;
    }
    let audit_webhook = match &args.audit_webhook_config_file {
        None => None,
        Some(path) => Some((
            apiserver::audit::webhook::Target::from_kubeconfig(path)
                .map_err(|e| anyhow::anyhow!("--audit-webhook-config-file: {e}"))?,
            apiserver::audit::webhook::Batching {
                max_size: args.audit_webhook_batch_max_size as usize,
                max_wait: args.audit_webhook_batch_max_wait,
                initial_backoff: args.audit_webhook_initial_backoff,
            },
        )),
    };
    let state = Arc::new(
        apiserver::State::new(
            store.clone(),
            authn,
            Box::new(apiserver::auth::AllowAuthenticated),
        )
        .with_service_cidr(&args.service_cidr)
        .map_err(|e| anyhow::anyhow!("--service-cidr: {e}"))?
        .with_ca_bundle(&pki.ca_cert)
        .with_kubelet_client(&pki.kubelet_client_cert, &pki.kubelet_client_key)
        .map_err(|e| anyhow::anyhow!("kubelet client certificate: {e}"))?
        .with_metrics(scheduler::metrics::render)
        .with_audit(
            args.audit_policy_file.as_deref(),
            args.audit_log_path.as_deref().map(|path| {
                let rotation = apiserver::audit::Rotation {
                    max_bytes: args.audit_log_maxsize.saturating_mul(1024 * 1024),
                    max_backups: args.audit_log_maxbackup,
                    max_age: (args.audit_log_maxage > 0)
                        .then(|| std::time::Duration::from_secs(args.audit_log_maxage * 86_400)),
                };
                (path, rotation)
            }),
            audit_webhook,
        )
        .map_err(|e| anyhow::anyhow!("--audit-policy-file: {e}"))?,
    );
    apiserver::bootstrap_service(&state, args.https_listen_port)
        .await
        .map_err(|e| anyhow::anyhow!("creating the kubernetes Service: {e}"))?;
    let advertise = args.advertise_address.unwrap_or_else(|| {
        match args.bind_address.parse::<std::net::IpAddr>() {
            Ok(ip) if !ip.is_unspecified() => ip,
            _ => std::net::IpAddr::V4(args.node.node_ip.unwrap_or_else(agent::node::primary_ip)),
        }
    });
    apiserver::bootstrap_endpoints(&state, advertise, args.https_listen_port)
        .await
        .map_err(|e| anyhow::anyhow!("publishing the kubernetes Service's endpoints: {e}"))?;
    let tls = apiserver::tls_config(&pki.serving_cert, &pki.serving_key, &pki.ca_cert)
        .map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?;
    let addr: std::net::SocketAddr = format!("{}:{}", args.bind_address, args.https_listen_port)
        .parse()
        .with_context(|| format!("--bind-address {}", args.bind_address))?;
    let listener = apiserver::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(
        %addr,
        kubeconfig = %args.data_dir.join("kubeconfig.yaml").display(),
        disable_agent = args.disable_agent,
        cluster_cidr = %args.cluster_cidr,
        service_cidr = %args.service_cidr,
        "API server listening"
    );
    let mut components = tokio::task::JoinSet::new();
    // The policy tables to remove on a clean stop.
    let mut netpol_table = None;
    let admin = args.data_dir.join("kubeconfig.yaml");
    let identity = format!(
        "{}_{}",
        args.node_name.clone().unwrap_or_else(hostname),
        uuid_like()
    );
    if !args.disable_controller_manager {
        let (admin, identity) = (admin.clone(), identity.clone());
        let config = controllers::Config {
            cluster_cidr: Some(args.cluster_cidr.clone()),
            node_monitor_grace_period: args.node_monitor_grace_period,
            terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
            storage_dir: args.data_dir.join("storage").display().to_string(),
            root_ca: Some(pki.ca_cert.clone()),
            ..Default::default()
        };
        components.spawn(async move {
            let client = runtime::client::from_kubeconfig(&admin).await?;
            runtime::LeaderElection::new("kube-system", "kube-controller-manager", &identity)
                .run(client.clone(), move || {
                    controllers::run(client.clone(), config.clone())
                })
                .await;
            anyhow::Ok(())
        });
    }
    if !args.disable_scheduler {
        let (admin, identity) = (admin.clone(), identity.clone());
        let scheduler_config = match &args.scheduler_config {
            Some(path) => scheduler::Config::from_file(path)
                .with_context(|| format!("--scheduler-config {}", path.display()))?,
            None => scheduler::Config::default(),
        };
        components.spawn(async move {
            let client = runtime::client::from_kubeconfig(&admin).await?;
            runtime::LeaderElection::new("kube-system", "kube-scheduler", &identity)
                .run(client.clone(), move || {
                    let (client, config) = (client.clone(), scheduler_config.clone());
                    async move {
                        if let Err(e) = scheduler::run(client, config).await {
                            tracing::error!(error = %e, "scheduler stopped");
                        }
                    }
                })
                .await;
            anyhow::Ok(())
        });
    }
    if !args.disable_dns {
        let admin = admin.clone();
        let node_ip = args.node.node_ip.unwrap_or_else(agent::node::primary_ip);
        let listen = args
            .dns_listen
            .unwrap_or_else(|| std::net::SocketAddr::from((node_ip, 0)));
        let address = match listen.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_unspecified() => ip,
            _ => node_ip,
        };
        let publish = nth_service_ip(&args.service_cidr, 10)
            .filter(|_| !address.is_loopback())
            .map(|service_ip| net::dns::Publish {
                service_ip,
                address,
            });
        let config = net::dns::Config {
            listen,
            cluster_domain: args.cluster_domain.clone(),
            publish,
            ..Default::default()
        };
        components.spawn(async move {
            let client = runtime::client::from_kubeconfig(&admin).await?;
            // Like ingress: DNS failing (a taken port) leaves the control
            // plane running.
            if let Err(e) = net::dns::serve(client, config).await {
                tracing::error!(error = %format!("{e:#}"), "the cluster DNS server stopped; the rest of the server keeps running");
            }
            std::future::pending::<anyhow::Result<()>>().await
        });
    }
    if !args.disable_ingress {
        let admin = admin.clone();
        let config = net::ingress::Config {
            http_listen: args.ingress_http_listen,
            https_listen: args.ingress_https_listen,
        };
        components.spawn(async move {
            let client = runtime::client::from_kubeconfig(&admin).await?;
            // A taken port 80 or 443 must not take the control plane down
            // with it.
            if let Err(e) = net::ingress::serve(client, config).await {
                tracing::error!(error = %format!("{e:#}"), "the ingress controller stopped; the rest of the server keeps running");
            }
            std::future::pending::<anyhow::Result<()>>().await
        });
    }
    if !args.disable_agent {
        let admin = admin.clone();
        let mut config = args.node.config(
            args.node_name.clone().unwrap_or_else(hostname),
            args.data_dir.clone(),
            &args.cluster_domain,
            &args.service_cidr,
        );
        config.kubelet_tls = Some(NodeArgs::kubelet_tls(&config, &pki.ca_cert)?);
        config.image_gc.validate().map_err(anyhow::Error::msg)?;
        config.eviction = eviction;
        config.reserved = reserved;
        if let Some(proxy) = args.node.proxy_config(&config) {
            let admin = admin.clone();
            components.spawn(async move {
                let client = runtime::client::from_kubeconfig(&admin).await?;
                run_proxy(client, proxy).await
            });
        }
        if !args.node.disable_pod_routes {
            let (admin, node) = (admin.clone(), config.node_name.clone());
            components.spawn(async move {
                let client = runtime::client::from_kubeconfig(&admin).await?;
                run_pod_routes(client, node).await
            });
        }
        if let Some(netpol) = args.node.netpol_config(&config) {
            netpol_table = Some(netpol.table.clone());
            let admin = admin.clone();
            components.spawn(async move {
                let client = runtime::client::from_kubeconfig(&admin).await?;
                run_netpol(client, netpol).await
            });
        }
        components.spawn(async move {
            let client = runtime::client::from_kubeconfig(&admin).await?;
            agent::run(client, config).await
        });
    }
    tokio::select! {
        r = apiserver::serve_tls(state, listener, tls) => r.context("API server")?,
        Some(r) = components.join_next() => match r {
            Ok(Ok(())) => anyhow::bail!("a component stopped"),
            Ok(Err(e)) => return Err(e.context("a component failed")),
            Err(e) => anyhow::bail!("a component panicked: {e}"),
        },
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    if let Some(table) = netpol_table {
        // Stop everything first, so no apply races the removal.
        let _ = tokio::time::timeout(Duration::from_secs(5), components.shutdown()).await;
        remove_netpol(&table).await;
    }
    Ok(())
}

/// NetworkPolicy enforcement until it fails; a failure is logged and
/// leaves the rest of the node running (with the rules last applied, if
/// any: they are removed on a clean stop).
async fn run_netpol(client: kube::Client, config: net::netpol::Config) -> anyhow::Result<()> {
    if let Err(e) = net::netpol::run(client, config).await {
        tracing::error!(error = %format!("{e:#}"), "network policy enforcement stopped; NetworkPolicies are not enforced on this node");
    }
    std::future::pending::<anyhow::Result<()>>().await
}

/// Deletes the policy tables on a clean stop: nothing enforces them once
/// this process is gone, and stale rules would keep isolating.
async fn remove_netpol(table: &str) {
    if let Err(e) = net::netpol::remove(table).await {
        tracing::warn!(error = %format!("{e:#}"), table, "removing the network policy tables failed");
    }
}

/// The service proxy until it fails; a failure (no nft, say) is logged and
/// leaves the rest of the node running.
async fn run_proxy(client: kube::Client, config: net::proxy::Config) -> anyhow::Result<()> {
    if let Err(e) = net::proxy::run(client, config).await {
        tracing::error!(error = %format!("{e:#}"), "the service proxy stopped; Services are not reachable through their ClusterIPs on this node");
    }
    std::future::pending::<anyhow::Result<()>>().await
}

/// The pod routes until they fail; a failure is logged and leaves the
/// rest of the node running (pods on other nodes are then unreachable).
async fn run_pod_routes(client: kube::Client, node: String) -> anyhow::Result<()> {
    if let Err(e) = net::routes::run(client, node).await {
        tracing::error!(error = %format!("{e:#}"), "pod routes stopped; other nodes' pods may be unreachable from this one");
    }
    std::future::pending::<anyhow::Result<()>>().await
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// A random suffix telling processes on one host apart.
fn uuid_like() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The service range agents assume when not told (the server's default).
const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";

/// The first usable address of the service range: the `kubernetes` Service.
fn first_service_ip(cidr: &str) -> Option<std::net::IpAddr> {
    nth_service_ip(cidr, 1)
}

/// The n-th address of the service range (10: cluster DNS, as k3s does).
fn nth_service_ip(cidr: &str, n: u32) -> Option<std::net::IpAddr> {
    let (net, _) = cidr.split_once('/')?;
    match net.parse().ok()? {
        std::net::IpAddr::V4(v4) => Some(std::net::IpAddr::V4((u32::from(v4) + n).into())),
        std::net::IpAddr::V6(v6) => Some(std::net::IpAddr::V6((u128::from(v6) + n as u128).into())),
    }
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let eviction = args.node.eviction()?;
    let reserved = args.node.reserved()?;
    let (client, ca) = join::client(&args.server, &args.token).await?;
    let Some(count) = args.simulated_nodes else {
        let mut config = args.node.config(
            args.node_name.clone().unwrap_or_else(hostname),
            args.data_dir.clone(),
            &args.cluster_domain,
            DEFAULT_SERVICE_CIDR,
        );
        config.kubelet_tls = Some(NodeArgs::kubelet_tls(&config, &ca)?);
        config.image_gc.validate().map_err(anyhow::Error::msg)?;
        config.eviction = eviction;
        config.reserved = reserved;
        if let Some(proxy) = args.node.proxy_config(&config) {
            tokio::spawn(run_proxy(client.clone(), proxy));
        }
        if !args.node.disable_pod_routes {
            tokio::spawn(run_pod_routes(client.clone(), config.node_name.clone()));
        }
        let netpol = args.node.netpol_config(&config).map(|netpol| {
            let table = netpol.table.clone();
            (tokio::spawn(run_netpol(client.clone(), netpol)), table)
        });
        let r = tokio::select! {
            r = agent::run(client, config) => r,
            _ = shutdown_signal() => Ok(()),
        };
        if let Some((task, table)) = netpol {
            task.abort();
            let _ = task.await;
            remove_netpol(&table).await;
        }
        return r;
    };
    let config = agent::simulated::Config {
        count,
        prefix: args.node_name.unwrap_or_else(|| "sim".to_owned()),
        ..Default::default()
    };
    tokio::select! {
        r = agent::simulated::run(client, config) => r,
        _ = shutdown_signal() => Ok(()),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("5m", Some(300.0)),
            ("90s", Some(90.0)),
            ("250ms", Some(0.25)),
            ("1h", Some(3600.0)),
            ("1.5m", Some(90.0)),
            ("5", None),
            ("0s", None),
            ("5d", None),
            ("m", None),
        ];
        for (input, want) in cases {
            let got = parse_duration(input).ok().map(|d| d.as_secs_f64());
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
