//! The configuration layer end to end: `airflow.cfg` text + environment + (fake or real)
//! commands → `Config`, `config show` / `config check` output, and every rule of
//! `reference/airflow.md` §5 (precedence, `_cmd`/`_secret`, booleans, `%%`, comments,
//! duplicates), the Airflow 1.10 and AVENTER configurations, and `config/airflow.cfg`.

use airflow_mesos::commands::config::{run, ConfigArgs, ConfigCommand};
use airflow_mesos::config::keys::KEYS;
use airflow_mesos::config::{
    load, Backend, CommandOutput, Config, ConfigErrors, DefaultVolume, FileInput, FileStatus,
    Loaded, MasterAddr, RealSystem, RegistryAuth, Secret, Source, Sources, SystemAccess,
    EXIT_CONFIG,
};
use airflow_mesos::task::policy::NetworkRule;
use airflow_mesos::task::{Containerizer, NetworkMode, Policy};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

const PATH: &str = "/etc/airflow/airflow.cfg";

/// Commands and files for tests: commands answer by their joined argv; every run is recorded.
#[derive(Default)]
struct Fake {
    commands: HashMap<String, (Option<i32>, String)>,
    files: HashMap<PathBuf, String>,
    ran: RefCell<Vec<String>>,
}

impl Fake {
    fn cmd(mut self, argv: &str, status: i32, stdout: &str) -> Fake {
        self.commands
            .insert(argv.to_string(), (Some(status), stdout.to_string()));
        self
    }
    fn file(mut self, path: &str, content: &str) -> Fake {
        self.files.insert(PathBuf::from(path), content.to_string());
        self
    }
}

impl SystemAccess for Fake {
    fn run_command(&self, argv: &[String]) -> io::Result<CommandOutput> {
        let key = argv.join(" ");
        self.ran.borrow_mut().push(key.clone());
        match self.commands.get(&key) {
            Some((status, out)) => Ok(CommandOutput {
                status: *status,
                stdout: out.as_bytes().to_vec(),
            }),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such program")),
        }
    }
    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }
    fn is_file(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }
}

fn base_env(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [("HOME", "/home/af"), ("USER", "af")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

fn load_with(
    file: Option<&str>,
    env: &[(&str, &str)],
    sys: &dyn SystemAccess,
) -> Result<Loaded, ConfigErrors> {
    let mut src = Sources::new(base_env(env), sys);
    if let Some(text) = file {
        src = src.with_file(PATH, text);
    }
    load(&src)
}

fn ok(file: Option<&str>, env: &[(&str, &str)]) -> Loaded {
    match load_with(file, env, &Fake::default()) {
        Ok(l) => l,
        Err(e) => panic!("expected a valid configuration, got:\n{e}"),
    }
}

fn errs(file: Option<&str>, env: &[(&str, &str)]) -> ConfigErrors {
    match load_with(file, env, &Fake::default()) {
        Ok(l) => panic!("expected errors, got a config: {:?}", l.config),
        Err(e) => e,
    }
}

fn entry<'a>(l: &'a Loaded, key: &str) -> &'a airflow_mesos::config::Entry {
    l.entries
        .iter()
        .find(|e| e.key == key)
        .unwrap_or_else(|| panic!("no entry for {key}"))
}

fn show(loaded: Result<Loaded, ConfigErrors>, json: bool) -> (i32, String) {
    let mut out = Vec::new();
    let code = run(
        &ConfigArgs {
            command: ConfigCommand::Show { json },
        },
        loaded,
        &mut out,
    );
    (code, String::from_utf8(out).unwrap())
}

fn check(loaded: Result<Loaded, ConfigErrors>) -> (i32, String) {
    let mut out = Vec::new();
    let code = run(
        &ConfigArgs {
            command: ConfigCommand::Check,
        },
        loaded,
        &mut out,
    );
    (code, String::from_utf8(out).unwrap())
}

fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.split('=').next().unwrap().trim() == key)
        .unwrap_or_else(|| panic!("{key} not in text"))
        + 1
}

// ------------------------------------------------------------------------------------------
// defaults and every key
// ------------------------------------------------------------------------------------------

#[test]
fn no_file_no_env_gives_every_default() {
    let l = ok(None, &[]);
    let home = PathBuf::from("/home/af/airflow");
    let expected = Config {
        path: None,
        airflow_home: home.clone(),
        master: MasterAddr::Hosts(vec!["http://localhost:5050".into()]),
        framework_name: "Airflow".into(),
        framework_user: "af".into(),
        task_cpu: 1.0,
        task_memory: 256.0,
        checkpoint: false,
        failover_timeout: 604800.0,
        authenticate: false,
        default_principal: None,
        default_secret: None,
        docker_image_slave: None,
        mesos_ssl: false,
        framework_role: "*".into(),
        task_disk: 0.0,
        command_shell: true,
        docker_network_mode: NetworkMode::Host,
        docker_volumes: vec![],
        docker_sock: None,
        docker_user_group_id: None,
        docker_environment: vec![],
        mesos_attributes: vec![],
        mesos_fetch_uri: None,
        mesos_fetch_uri_username: None,
        api_username: None,
        api_password: None,
        backend: Backend::Docker,
        containerizer: Containerizer::Docker,
        database_url: "sqlite:/home/af/airflow/airflow-mesos.db".into(),
        api_listen: "127.0.0.1:11000".parse().unwrap(),
        api_max_connections: 1024,
        api_header_timeout: 10.0,
        api_body_timeout: 60.0,
        api_idle_timeout: 60.0,
        api_token: None,
        api_token_file: "/home/af/airflow/airflow-mesos/api-token".into(),
        api_url: "http://127.0.0.1:11000".into(),
        public_url: None,
        registry: RegistryAuth::default(),
        send_registry_credentials: true,
        force_pull: false,
        kill_grace_period: 30.0,
        launch_retries: 3,
        reconciliation_interval: 900.0,
        offer_refuse_seconds: 120.0,
        store_outage_limit: 300.0,
        queued_timeout: 0.0,
        mesos_ca_cert: None,
        docker_privileged: false,
        local_cpus: None,
        local_memory: None,
        sandbox_dir: home.join("airflow-mesos/sandboxes"),
        sandbox_retention: 604_800.0,
        task_retention: 2_592_000.0,
        leader_election: false,
        leader_lease: 10.0,
        policy: Policy {
            default_user: "af".into(),
            ..Policy::default()
        },
        allowed_origins: vec![],
    };
    assert_eq!(l.config, expected);
    assert_eq!(l.entries.len(), KEYS.len());
    assert!(l.entries.iter().all(|e| e.source == Source::Default));
    assert_eq!(entry(&l, "master").value.as_deref(), Some("localhost:5050"));
    assert_eq!(
        entry(&l, "backend").value.as_deref(),
        Some("docker (no master is set)")
    );
    assert_eq!(entry(&l, "default_secret").value, None);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(l.file, FileStatus::NotGiven);
}

#[test]
fn airflow_home_and_user_fallbacks() {
    let sys = Fake::default();
    let mut env = HashMap::new();
    env.insert("AIRFLOW_HOME".to_string(), "/srv/af".to_string());
    let l = load(&Sources::new(env, &sys)).unwrap();
    assert_eq!(l.config.airflow_home, PathBuf::from("/srv/af"));
    assert_eq!(l.config.framework_user, "root");
    assert_eq!(l.config.database_url, "sqlite:/srv/af/airflow-mesos.db");
    assert_eq!(
        l.config.sandbox_dir,
        PathBuf::from("/srv/af/airflow-mesos/sandboxes")
    );
}

const ALL_KEYS: &str = r#"[mesos]
master = zk://zk1:2181,zk2:2181/mesos
framework_name = AF
task_cpu = 0.25
task_memory = 512.5
checkpoint = True
failover_timeout = 3600
authenticate = true
default_principal = princ
default_secret = s3cr3t-principal
docker_image_slave = "apache/airflow:2.10.5"
mesos_ssl = t
framework_role = eng/airflow
task_disk = 100
command_shell = false
docker_network_mode = user:airnet
docker_volume_driver = local
docker_volume_dag_name = dags
docker_volume_dag_container_path = /opt/airflow/dags
docker_volume_logs_name = logs
docker_volume_logs_container_path = /opt/airflow/logs
docker_sock = /var/run/docker.sock
docker_user_group_id = 999
docker_environment = [{"name": "TZ", "value": "UTC"},
    {'name': 'N', 'value': 3}]
mesos_attributes = ['airflow:true', "gpu:true?:cpu:true"]
mesos_fetch_uri = http://dags:8000
mesos_fetch_uri_username = airflow
api_username = apiuser
api_password = api-pass-xyz
operator_api_url = http://localhost:11000
backend = docker
containerizer = mesos
database_url = postgresql+psycopg2://am:db-pass-xyz@db:5432/am
api_listen = 0.0.0.0:12000
api_max_connections = 2048
api_header_timeout = 5
api_body_timeout = 7
api_idle_timeout = 120
api_token = tok-xyz
api_token_file = /srv/am/token
api_url = http://sched:12000/
public_url = http://10.0.0.5:12000
framework_user = airflow
docker_registry = reg.example.com:5000
docker_registry_username = bot
docker_registry_password = reg-pass-xyz
docker_config = /fake/config.json
docker_credentials_uri = http://files/docker.tar.gz
send_registry_credentials = f
force_pull = 1
kill_grace_period = 5.5
launch_retries = 0
reconciliation_interval = 60
offer_refuse_seconds = 0
store_outage_limit = 45
queued_timeout = 3600
mesos_ca_cert = /fake/ca.pem
docker_privileged = TRUE
local_cpus = 2
local_memory = 2048
sandbox_dir = ~/sandboxes
sandbox_retention = 3600
task_retention = 86400
leader_election = database
leader_lease = 4.5
allow_privileged = true
allowed_host_paths = /srv/data, /var/lib/airflow
allowed_users = airflow, nobody
allowed_network_modes = bridge, user:*
allowed_images = reg.example.com:5000, apache/airflow
max_task_cpu = 4
max_task_memory = 8192
max_task_disk = 1000
allowed_docker_parameters = shm-size
allowed_origins = https://airflow.example.com
"#;

const SECRETS: [&str; 5] = [
    "s3cr3t-principal",
    "api-pass-xyz",
    "db-pass-xyz",
    "tok-xyz",
    "reg-pass-xyz",
];

fn all_keys_expected(path: Option<PathBuf>) -> Config {
    Config {
        path,
        airflow_home: "/home/af/airflow".into(),
        master: MasterAddr::Zk {
            servers: "zk1:2181,zk2:2181".into(),
            path: "/mesos".into(),
            auth: None,
        },
        framework_name: "AF".into(),
        framework_user: "airflow".into(),
        task_cpu: 0.25,
        task_memory: 512.5,
        checkpoint: true,
        failover_timeout: 3600.0,
        authenticate: true,
        default_principal: Some("princ".into()),
        default_secret: Some(Secret::new("s3cr3t-principal")),
        docker_image_slave: Some("apache/airflow:2.10.5".into()),
        mesos_ssl: true,
        framework_role: "eng/airflow".into(),
        task_disk: 100.0,
        command_shell: false,
        docker_network_mode: NetworkMode::User("airnet".into()),
        docker_volumes: vec![
            DefaultVolume {
                name: "dags".into(),
                container_path: "/opt/airflow/dags".into(),
                driver: Some("local".into()),
            },
            DefaultVolume {
                name: "logs".into(),
                container_path: "/opt/airflow/logs".into(),
                driver: Some("local".into()),
            },
        ],
        docker_sock: Some("/var/run/docker.sock".into()),
        docker_user_group_id: Some("999".into()),
        docker_environment: vec![("TZ".into(), "UTC".into()), ("N".into(), "3".into())],
        mesos_attributes: vec!["airflow:true".into(), "gpu:true?:cpu:true".into()],
        mesos_fetch_uri: Some("http://dags:8000".into()),
        mesos_fetch_uri_username: Some("airflow".into()),
        api_username: Some("apiuser".into()),
        api_password: Some(Secret::new("api-pass-xyz")),
        backend: Backend::Docker,
        containerizer: Containerizer::Mesos,
        database_url: "postgres://am:db-pass-xyz@db:5432/am".into(),
        api_listen: "0.0.0.0:12000".parse().unwrap(),
        api_max_connections: 2048,
        api_header_timeout: 5.0,
        api_body_timeout: 7.0,
        api_idle_timeout: 120.0,
        api_token: Some(Secret::new("tok-xyz")),
        api_token_file: "/srv/am/token".into(),
        api_url: "http://sched:12000".into(),
        public_url: Some("http://10.0.0.5:12000".into()),
        registry: RegistryAuth {
            registry: Some("reg.example.com:5000".into()),
            username: Some("bot".into()),
            password: Some(Secret::new("reg-pass-xyz")),
            docker_config: Some("/fake/config.json".into()),
            credentials_uri: Some("http://files/docker.tar.gz".into()),
        },
        send_registry_credentials: false,
        force_pull: true,
        kill_grace_period: 5.5,
        launch_retries: 0,
        reconciliation_interval: 60.0,
        offer_refuse_seconds: 0.0,
        store_outage_limit: 45.0,
        queued_timeout: 3600.0,
        mesos_ca_cert: Some("/fake/ca.pem".into()),
        docker_privileged: true,
        local_cpus: Some(2.0),
        local_memory: Some(2048.0),
        sandbox_dir: "/home/af/sandboxes".into(),
        sandbox_retention: 3600.0,
        task_retention: 86_400.0,
        leader_election: true,
        leader_lease: 4.5,
        policy: Policy {
            allow_privileged: true,
            host_paths: vec!["/srv/data".into(), "/var/lib/airflow".into()],
            users: Some(vec!["airflow".into(), "nobody".into()]),
            network_modes: vec![NetworkRule::Mode(NetworkMode::Bridge), NetworkRule::AnyUser],
            images: Some(vec![
                "reg.example.com:5000".into(),
                "docker.io/apache/airflow".into(),
            ]),
            max_cpus: Some(4.0),
            max_mem: Some(8192.0),
            max_disk: Some(1000.0),
            docker_parameters: Some(vec!["shm-size".into()]),
            default_user: "airflow".into(),
            default_network: NetworkMode::User("airnet".into()),
            default_image: Some("apache/airflow:2.10.5".into()),
            default_containerizer: Containerizer::Mesos,
        },
        allowed_origins: vec!["https://airflow.example.com".into()],
    }
}

fn fake_files() -> Fake {
    Fake::default()
        .file("/fake/config.json", "{}")
        .file("/fake/ca.pem", "-----BEGIN CERTIFICATE-----")
}

#[test]
fn every_key_set_in_the_file() {
    let sys = fake_files();
    let l = load_with(Some(ALL_KEYS), &[], &sys).unwrap();
    assert_eq!(l.config, all_keys_expected(Some(PATH.into())));
    assert_eq!(l.entries.len(), KEYS.len());
    for e in &l.entries {
        assert_eq!(
            e.source,
            Source::File {
                line: line_of(ALL_KEYS, &e.key)
            },
            "{}",
            e.key
        );
    }
    for k in [
        "default_secret",
        "api_password",
        "api_token",
        "docker_registry_password",
    ] {
        assert_eq!(entry(&l, k).value.as_deref(), Some("***"), "{k}");
        assert!(entry(&l, k).secret);
    }
    assert_eq!(
        entry(&l, "database_url").value.as_deref(),
        Some("postgresql+psycopg2://am:***@db:5432/am")
    );
    assert_eq!(
        entry(&l, "docker_environment").value.as_deref(),
        Some("TZ=***, N=***")
    );
    // operator_api_url is the only thing worth a warning here.
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(l.warnings[0].contains("[mesos] operator_api_url"));
    assert!(l.warnings[0].contains(&format!("{PATH}:{}", line_of(ALL_KEYS, "operator_api_url"))));
}

#[test]
fn every_key_set_in_the_environment() {
    let mut env = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in ALL_KEYS.lines().skip(1) {
        if line.starts_with(' ') {
            current.as_mut().unwrap().1.push_str(line);
            continue;
        }
        if let Some(kv) = current.take() {
            env.push(kv);
        }
        let (k, v) = line.split_once(" = ").unwrap();
        current = Some((
            format!("AIRFLOW__MESOS__{}", k.to_uppercase()),
            v.to_string(),
        ));
    }
    env.extend(current);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let sys = fake_files();
    let l = load_with(None, &env_refs, &sys).unwrap();
    assert_eq!(l.config, all_keys_expected(None));
    for e in &l.entries {
        assert_eq!(
            e.source,
            Source::Env {
                var: format!("AIRFLOW__MESOS__{}", e.key.to_uppercase())
            }
        );
    }
}

#[test]
fn fractional_resources_and_empty_means_missing() {
    let text = "[mesos]\ntask_cpu = 0.1\ntask_memory =\ndocker_image_slave =\nmaster =\n";
    let l = ok(Some(text), &[]);
    assert_eq!(l.config.task_cpu, 0.1);
    assert_eq!(l.config.task_memory, 256.0);
    assert_eq!(l.config.docker_image_slave, None);
    // An empty master is "not set": the local Docker backend is the default.
    assert_eq!(l.config.backend, Backend::Docker);
    assert_eq!(entry(&l, "task_memory").source, Source::Default);
}

#[test]
fn backend_defaults_to_mesos_once_a_master_is_set_anywhere() {
    let l = ok(Some("[mesos]\nmaster = m1:5050\n"), &[]);
    assert_eq!(l.config.backend, Backend::Mesos);
    assert_eq!(
        entry(&l, "backend").value.as_deref(),
        Some("mesos (master is set)")
    );
    let l = ok(None, &[("AIRFLOW__MESOS__MASTER", "m1")]);
    assert_eq!(l.config.backend, Backend::Mesos);
    assert_eq!(
        l.config.master,
        MasterAddr::Hosts(vec!["http://m1:5050".into()])
    );
    let l = ok(Some("[mesos]\nmaster = m1:5050\nbackend = DOCKER\n"), &[]);
    assert_eq!(l.config.backend, Backend::Docker);
}

#[test]
fn database_urls_are_translated_from_sqlalchemy_syntax() {
    for (written, used) in [
        (
            "postgresql+psycopg2://am:pw@db:5432/am",
            "postgres://am:pw@db:5432/am",
        ),
        ("mysql+mysqldb://am:pw@db/am", "mysql://am:pw@db/am"),
        ("sqlite:////var/lib/am.db", "sqlite:///var/lib/am.db"),
        ("sqlite:///relative.db", "sqlite:relative.db"),
        ("sqlite:/abs/am.db", "sqlite:/abs/am.db"),
        ("postgres://db/am", "postgres://db/am"),
    ] {
        let l = ok(Some(&format!("[mesos]\ndatabase_url = {written}\n")), &[]);
        assert_eq!(l.config.database_url, used, "{written}");
    }
    // The default, as shown, means the same when written back into a file.
    let shown = entry(&ok(None, &[]), "database_url").value.clone().unwrap();
    let l = ok(Some(&format!("[mesos]\ndatabase_url = {shown}\n")), &[]);
    assert_eq!(l.config.database_url, ok(None, &[]).config.database_url);
}

#[test]
fn master_forms_through_the_loader() {
    let cases: [(&str, MasterAddr); 5] = [
        (
            "a:5050,b:5051",
            MasterAddr::Hosts(vec!["http://a:5050".into(), "http://b:5051".into()]),
        ),
        (
            "https://m:443",
            MasterAddr::Hosts(vec!["https://m:443".into()]),
        ),
        (
            "zk://u:zk-pass@z:2181/mesos",
            MasterAddr::Zk {
                servers: "z:2181".into(),
                path: "/mesos".into(),
                auth: Some(Secret::new("u:zk-pass")),
            },
        ),
        (
            "file:///etc/mesos/master",
            MasterAddr::File("/etc/mesos/master".into()),
        ),
        (
            "master@10.1.1.1:5050",
            MasterAddr::Hosts(vec!["http://10.1.1.1:5050".into()]),
        ),
    ];
    for (v, want) in cases {
        let l = ok(Some(&format!("[mesos]\nmaster = {v}\n")), &[]);
        assert_eq!(l.config.master, want, "{v}");
    }
    // mesos_ssl makes bare hosts https.
    let l = ok(Some("[mesos]\nmaster = m:5050\nmesos_ssl = True\n"), &[]);
    assert_eq!(
        l.config.master,
        MasterAddr::Hosts(vec!["https://m:5050".into()])
    );
    // A ZooKeeper password is masked in show.
    let l = ok(Some("[mesos]\nmaster = zk://u:zk-pass@z:2181/mesos\n"), &[]);
    assert_eq!(
        entry(&l, "master").value.as_deref(),
        Some("zk://u:***@z:2181/mesos")
    );
    let (_, out) = show(Ok(l), false);
    assert!(!out.contains("zk-pass"), "{out}");
}

// ------------------------------------------------------------------------------------------
// precedence, _cmd, _secret
// ------------------------------------------------------------------------------------------

#[test]
fn environment_overrides_the_file() {
    let text = "[mesos]\ntask_cpu = 2\nframework_name = FromFile\n";
    let l = ok(Some(text), &[("AIRFLOW__MESOS__TASK_CPU", "3.5")]);
    assert_eq!(l.config.task_cpu, 3.5);
    assert_eq!(
        entry(&l, "task_cpu").source,
        Source::Env {
            var: "AIRFLOW__MESOS__TASK_CPU".into()
        }
    );
    assert_eq!(l.config.framework_name, "FromFile");
    assert_eq!(entry(&l, "framework_name").source, Source::File { line: 3 });
    // Lower-case env names are not Airflow's convention and are not read.
    let l = ok(Some(text), &[("airflow__mesos__task_cpu", "9")]);
    assert_eq!(l.config.task_cpu, 2.0);
}

#[test]
fn secret_precedence_follows_airflow() {
    // env > env _CMD > env _SECRET > file > file _cmd > file _secret > default
    let sys = || {
        Fake::default()
            .cmd("get env-cmd", 0, "from-env-cmd\n")
            .cmd("get file-cmd", 0, "from-file-cmd\r\n")
            .file("/s/env", "from-env-secret\n")
            .file("/s/file", "from-file-secret\n\n")
    };
    let file_all = "[mesos]\ndefault_secret = from-file\ndefault_secret_cmd = get file-cmd\ndefault_secret_secret = /s/file\n";
    let file_cmd_secret =
        "[mesos]\ndefault_secret_cmd = get file-cmd\ndefault_secret_secret = /s/file\n";
    let file_secret = "[mesos]\ndefault_secret_secret = /s/file\n";
    let env_all: &[(&str, &str)] = &[
        ("AIRFLOW__MESOS__DEFAULT_SECRET", "from-env"),
        ("AIRFLOW__MESOS__DEFAULT_SECRET_CMD", "get env-cmd"),
        ("AIRFLOW__MESOS__DEFAULT_SECRET_SECRET", "/s/env"),
    ];
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        &'a str,
        Vec<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            file_all,
            env_all,
            Some("from-env"),
            "env AIRFLOW__MESOS__DEFAULT_SECRET",
            vec![],
        ),
        (
            file_all,
            &env_all[1..],
            Some("from-env-cmd"),
            "cmd (env AIRFLOW__MESOS__DEFAULT_SECRET_CMD)",
            vec!["get env-cmd"],
        ),
        (
            file_all,
            &env_all[2..],
            Some("from-env-secret"),
            "secret (env AIRFLOW__MESOS__DEFAULT_SECRET_SECRET)",
            vec![],
        ),
        (file_all, &[], Some("from-file"), "file:2", vec![]),
        (
            file_cmd_secret,
            &[],
            Some("from-file-cmd"),
            "cmd (file:2)",
            vec!["get file-cmd"],
        ),
        (
            file_secret,
            &[],
            Some("from-file-secret"),
            "secret (file:2)",
            vec![],
        ),
        ("[mesos]\n", &[], None, "default", vec![]),
    ];
    for (file, env, want, source, ran) in cases {
        let s = sys();
        let l = load_with(Some(file), env, &s).unwrap();
        assert_eq!(
            l.config.default_secret.as_ref().map(Secret::expose),
            want,
            "{file} {env:?}"
        );
        assert_eq!(entry(&l, "default_secret").source.to_string(), source);
        // Only the winning command runs.
        assert_eq!(*s.ran.borrow(), ran, "{file} {env:?}");
    }
}

#[test]
fn cmd_and_secret_for_every_secret_key_and_database_url() {
    let sys = Fake::default()
        .cmd("pass show x", 0, "postgresql://u:pw@h/db\n")
        .file("/run/secrets/tok", "t0k\n")
        .file("/run/secrets/reg", "r3g")
        .cmd("vault read -field=pw api", 0, "ap1");
    let text = "[mesos]\n\
        database_url_cmd = pass show x\n\
        api_token_secret = /run/secrets/tok\n\
        docker_registry_username = bot\n\
        docker_registry_password_secret = /run/secrets/reg\n\
        api_username = u\n\
        api_password_cmd = vault read -field=pw api\n";
    let l = load_with(Some(text), &[], &sys).unwrap();
    assert_eq!(l.config.database_url, "postgres://u:pw@h/db");
    assert_eq!(
        entry(&l, "database_url").value.as_deref(),
        Some("postgresql://u:***@h/db")
    );
    assert_eq!(l.config.api_token.as_ref().unwrap().expose(), "t0k");
    assert_eq!(l.config.registry.password.as_ref().unwrap().expose(), "r3g");
    assert_eq!(l.config.api_password.as_ref().unwrap().expose(), "ap1");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn cmd_and_secret_of_non_secret_keys_are_ignored_with_a_warning() {
    let sys = Fake::default().cmd("echo m", 0, "m:1");
    let l = load_with(
        Some("[mesos]\nmaster_cmd = echo m\n"),
        &[("AIRFLOW__MESOS__TASK_CPU_SECRET", "/x")],
        &sys,
    )
    .unwrap();
    assert!(sys.ran.borrow().is_empty());
    assert_eq!(
        l.config.master,
        MasterAddr::Hosts(vec!["http://localhost:5050".into()])
    );
    assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
    assert!(l
        .warnings
        .iter()
        .any(|w| w.contains("[mesos] master_cmd is ignored") && w.contains(":2")));
    assert!(l
        .warnings
        .iter()
        .any(|w| w.contains("AIRFLOW__MESOS__TASK_CPU_SECRET")
            && w.contains("[mesos] task_cpu_secret is ignored")));
}

#[test]
fn values_expand_environment_variables_and_tilde() {
    let text = "[mesos]\nsandbox_dir = ~/sb\ndocker_image_slave = ${REGISTRY}/airflow:$TAG\n";
    let l = ok(Some(text), &[("REGISTRY", "reg:5000"), ("TAG", "2.10")]);
    assert_eq!(l.config.sandbox_dir, PathBuf::from("/home/af/sb"));
    assert_eq!(
        l.config.docker_image_slave.as_deref(),
        Some("reg:5000/airflow:2.10")
    );
    let l = ok(None, &[("AIRFLOW__MESOS__SANDBOX_DIR", "$HOME/x")]);
    assert_eq!(l.config.sandbox_dir, PathBuf::from("/home/af/x"));
}

// ------------------------------------------------------------------------------------------
// syntax: booleans, %%, comments, duplicates, continuation lines, sections
// ------------------------------------------------------------------------------------------

#[test]
fn booleans_accept_airflow_words_only() {
    for (v, want) in [
        ("t", true),
        ("TRUE", true),
        ("True", true),
        ("1", true),
        ("true # comment ignored for booleans", true),
        ("f", false),
        ("False", false),
        ("0", false),
        ("FALSE", false),
    ] {
        let l = ok(Some(&format!("[mesos]\ncheckpoint = {v}\n")), &[]);
        assert_eq!(l.config.checkpoint, want, "{v}");
    }
    let e = errs(Some("[mesos]\n\nauthenticate = yes-please\n"), &[]);
    assert_eq!(e.errors.len(), 1);
    assert_eq!(
        e.errors[0].to_string(),
        format!("{PATH}:3: [mesos] authenticate = \"yes-please\": expected a boolean: t, true, 1, f, false or 0 (any case)")
    );
    let e = errs(None, &[("AIRFLOW__MESOS__FORCE_PULL", "on")]);
    assert_eq!(
        e.errors[0].to_string(),
        "environment variable AIRFLOW__MESOS__FORCE_PULL: [mesos] force_pull = \"on\": expected a boolean: t, true, 1, f, false or 0 (any case)"
    );
}

#[test]
fn double_percent_is_a_literal_percent_in_the_file_only() {
    let text = "[mesos]\nframework_name = Air%%flow\nframework_user = %(framework_name)s-user\n";
    let l = ok(Some(text), &[]);
    assert_eq!(l.config.framework_name, "Air%flow");
    assert_eq!(l.config.framework_user, "Air%flow-user");
    let l = ok(None, &[("AIRFLOW__MESOS__FRAMEWORK_NAME", "Air%%flow")]);
    assert_eq!(l.config.framework_name, "Air%%flow");
    let e = errs(Some("[mesos]\nframework_name = 100%\n"), &[]);
    assert_eq!(
        e.errors[0].to_string(),
        format!("{PATH}:2: [mesos] framework_name: '%' must be followed by '%' or '(' (write %% for a literal %)")
    );
}

#[test]
fn comments_are_whole_lines_only() {
    let text = "# top\n[mesos]\n; semicolon comment\n   # indented comment\nframework_name = Air # flow\ndocker_image_slave = img ; not a comment\n";
    let l = ok(Some(text), &[]);
    assert_eq!(l.config.framework_name, "Air # flow");
    assert_eq!(
        l.config.docker_image_slave.as_deref(),
        Some("img ; not a comment")
    );
    // ...so a number with a trailing comment is an error, as in Airflow.
    let e = errs(Some("[mesos]\ntask_cpu = 2 # two cpus\n"), &[]);
    assert!(e.errors[0]
        .to_string()
        .contains("[mesos] task_cpu = \"2 # two cpus\""));
}

#[test]
fn keys_are_case_insensitive_and_sections_are_not() {
    let l = ok(Some("[mesos]\nTASK_CPU = 2\nFramework_Name = X\n"), &[]);
    assert_eq!(l.config.task_cpu, 2.0);
    assert_eq!(l.config.framework_name, "X");
    let l = ok(Some("[MESOS]\ntask_cpu = 2\n"), &[]);
    assert_eq!(l.config.task_cpu, 1.0);
    assert_eq!(l.warnings.len(), 1);
    assert!(
        l.warnings[0].contains("section [MESOS] is ignored"),
        "{:?}",
        l.warnings
    );
}

#[test]
fn duplicates_are_errors_naming_both_lines() {
    let text = "[mesos]\ntask_cpu = 1\nframework_name = A\nTask_Cpu = 2\n[core]\nx = 1\n[mesos]\nmaster = m\n";
    let e = errs(Some(text), &[]);
    let msgs: Vec<String> = e.errors.iter().map(|x| x.to_string()).collect();
    assert_eq!(
        msgs,
        vec![
            format!(
                "{PATH}: line 4: [mesos] task_cpu is given twice in the section (first at line 2)"
            ),
            format!("{PATH}: line 7: section [mesos] appears twice (first at line 1)"),
        ]
    );
    assert_eq!(e.errors[0].key(), Some("task_cpu"));
}

#[test]
fn syntax_errors_name_the_line_without_echoing_it() {
    let e = errs(Some("[mesos]\ndefault_secret hunter2-in-bad-line\n"), &[]);
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{PATH}: line 2: expected `key = value`")),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn continuation_lines_and_default_section() {
    let text = "[DEFAULT]\ntask_memory = 1024\n[mesos]\nmesos_attributes = [\n    'a:1',\n\n    # comment inside\n    'b:2']\n";
    let l = ok(Some(text), &[]);
    assert_eq!(
        l.config.mesos_attributes,
        vec!["a:1".to_string(), "b:2".into()]
    );
    assert_eq!(
        entry(&l, "mesos_attributes").source,
        Source::File { line: 4 }
    );
    assert_eq!(l.config.task_memory, 1024.0);
    assert_eq!(entry(&l, "task_memory").source, Source::File { line: 2 });
}

#[test]
fn unknown_keys_warn_with_did_you_mean() {
    let l = ok(
        Some("[mesos]\ntask_cpus = 2\nfavourite_colour = blue\n"),
        &[("AIRFLOW__MESOS__FRAMEWORK_NAMES", "x")],
    );
    assert_eq!(l.config.task_cpu, 1.0);
    assert_eq!(
        l.warnings,
        vec![
            format!("{PATH}:2: [mesos] task_cpus is not a known key and is ignored (did you mean task_cpu?)"),
            format!("{PATH}:3: [mesos] favourite_colour is not a known key and is ignored"),
            "environment variable AIRFLOW__MESOS__FRAMEWORK_NAMES: [mesos] framework_names is not a known key and is ignored (did you mean framework_name?)".to_string(),
        ]
    );
}

// ------------------------------------------------------------------------------------------
// bad inputs: every problem, with key, place, value and expectation
// ------------------------------------------------------------------------------------------

#[test]
fn every_problem_is_listed_with_key_line_value_and_expectation() {
    let text = "[mesos]
task_cpu = abc
task_memory = -5
master = zk://host
authenticate = True
failover_timeout = -1
backend = kubernetes
containerizer = rkt
docker_network_mode = overlay
api_listen = somewhere
launch_retries = -2
task_disk = lots
framework_role = -bad
docker_environment = [{'name': 'A'}]
mesos_attributes = ['nocolon']
public_url = ftp://x
docker_config = /nonexistent/config.json
database_url = oracle://u:ora-pass@h/db
local_cpus = 0
reconciliation_interval = 0
docker_volume_dag_name = dags
docker_registry_password = only-password
";
    let e = errs(Some(text), &[]);
    let got: Vec<(Option<&str>, String)> =
        e.errors.iter().map(|x| (x.key(), x.to_string())).collect();
    let expect_keys = [
        ("task_cpu", 2),
        ("task_memory", 3),
        ("master", 4),
        ("failover_timeout", 6),
        ("authenticate", 5),
        ("framework_role", 13),
        ("task_disk", 12),
        ("docker_network_mode", 9),
        ("docker_environment", 14),
        ("mesos_attributes", 15),
        ("backend", 7),
        ("containerizer", 8),
        ("database_url", 18),
        ("api_listen", 10),
        ("public_url", 16),
        ("docker_config", 17),
        ("launch_retries", 11),
        ("reconciliation_interval", 20),
        ("local_cpus", 19),
        ("docker_volume_dag_name", 21),
        ("docker_registry_password", 22),
    ];
    assert_eq!(got.len(), expect_keys.len(), "{got:#?}");
    for (key, line) in expect_keys {
        let (_, msg) = got
            .iter()
            .find(|(k, _)| *k == Some(key))
            .unwrap_or_else(|| panic!("no error for {key}: {got:#?}"));
        assert!(
            msg.starts_with(&format!("{PATH}:{line}: [mesos] {key}")),
            "{msg}"
        );
        assert!(
            msg.contains("expected") || msg.contains("requires") || msg.contains("needs"),
            "{msg}"
        );
    }
    // Listed in file order.
    let lines: Vec<usize> = got
        .iter()
        .map(|(_, m)| {
            m[PATH.len() + 1..]
                .split(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    let msg_of = |k: &str| got.iter().find(|(x, _)| *x == Some(k)).unwrap().1.clone();
    assert!(msg_of("task_cpu").contains(
        "= \"abc\": expected a number of at least 0.01 (the smallest container), in CPUs"
    ));
    assert!(msg_of("task_memory")
        .contains("= \"-5\": expected a number of at least 32 (the smallest container), in MB"));
    assert!(
        msg_of("master").contains("= \"zk://host\"") && msg_of("master").contains("znode path")
    );
    assert_eq!(
        msg_of("authenticate"),
        format!("{PATH}:5: [mesos] authenticate = True requires [mesos] default_principal and [mesos] default_secret (missing: default_principal, default_secret)")
    );
    assert!(msg_of("backend").contains("= \"kubernetes\": expected mesos or docker"));
    assert!(msg_of("containerizer").contains("expected docker, mesos or none"));
    assert!(msg_of("docker_network_mode").contains("host, bridge, none or user:<network name>"));
    assert!(msg_of("api_listen").contains("e.g. 127.0.0.1:11000"));
    assert!(msg_of("launch_retries").contains("a whole number"));
    assert!(msg_of("docker_environment").contains("(value not shown)"));
    assert!(
        msg_of("docker_volume_dag_name").contains("needs [mesos] docker_volume_dag_container_path")
    );
    assert!(msg_of("docker_registry_password").contains("needs [mesos] docker_registry_username"));
    let all = e.to_string();
    assert!(all.starts_with(&format!(
        "invalid configuration ({} problems):",
        expect_keys.len()
    )));
    assert!(
        !all.contains("ora-pass") && !all.contains("only-password"),
        "{all}"
    );
    // The same through `config check`: exit 64, every problem listed.
    let (code, out) = check(Err(e));
    assert_eq!(code, EXIT_CONFIG);
    assert_eq!(code, 64);
    for (key, _) in expect_keys {
        assert!(
            out.contains(&format!("[mesos] {key}")),
            "{key} missing in:\n{out}"
        );
    }
}

#[test]
fn authenticate_names_only_what_is_missing() {
    let e = errs(
        Some("[mesos]\nauthenticate = 1\ndefault_principal = p\n"),
        &[],
    );
    assert_eq!(e.errors.len(), 1);
    assert!(e.errors[0]
        .to_string()
        .ends_with("(missing: default_secret)"));
    let l = ok(
        Some("[mesos]\nauthenticate = 1\ndefault_principal = p\n"),
        &[("AIRFLOW__MESOS__DEFAULT_SECRET", "s")],
    );
    assert!(l.config.authenticate);
}

#[test]
fn containerizer_none_is_for_mesos_only() {
    let l = ok(
        Some("[mesos]\nmaster = m1:5050\ncontainerizer = none\n"),
        &[],
    );
    assert_eq!(l.config.containerizer, Containerizer::None);
    let err = errs(
        Some("[mesos]\nbackend = docker\ncontainerizer = none\n"),
        &[],
    );
    let text = err.to_string();
    assert!(
        text.contains("[mesos] containerizer") && text.contains("backend = mesos"),
        "{text}"
    );
}

#[test]
fn leader_election_follows_the_database() {
    let sqlite = ok(Some("[mesos]\n"), &[]);
    assert!(!sqlite.config.leader_election, "SQLite: one daemon");
    let pg = ok(
        Some("[mesos]\ndatabase_url = postgresql://u:p@db/am\n"),
        &[],
    );
    assert!(pg.config.leader_election, "PostgreSQL: elected by default");
    assert_eq!(pg.config.leader_lease, 10.0);
    let off = ok(
        Some("[mesos]\ndatabase_url = mysql://u:p@db/am\nleader_election = none\n"),
        &[],
    );
    assert!(!off.config.leader_election);
    let text = errs(Some("[mesos]\nleader_election = database\n"), &[]).to_string();
    assert!(
        text.contains("[mesos] leader_election") && text.contains("SQLite"),
        "{text}"
    );
    let text = errs(
        Some("[mesos]\ndatabase_url = postgresql://u:p@db/am\nleader_lease = 0.5\n"),
        &[],
    )
    .to_string();
    assert!(
        text.contains("[mesos] leader_lease") && text.contains("from 1 to 3600"),
        "{text}"
    );
}

#[test]
fn zk_path_must_not_be_root() {
    for v in ["zk://host", "zk://h1:2181,h2:2181/", "zk://h:2181"] {
        let e = errs(Some(&format!("[mesos]\nmaster = {v}\n")), &[]);
        assert_eq!(e.errors.len(), 1, "{v}");
        assert!(e.errors[0]
            .to_string()
            .contains(&format!("{PATH}:2: [mesos] master")));
    }
}

#[test]
fn missing_secret_file_names_key_and_path() {
    let e = load_with(
        Some("[mesos]\napi_token_secret = /run/secrets/none\n"),
        &[],
        &Fake::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.errors[0].to_string(),
        format!("{PATH}:2: [mesos] api_token_secret: cannot read secret file /run/secrets/none: No such file or directory")
    );
}

#[test]
fn an_empty_secret_from_a_command_or_file_is_an_error_and_an_empty_value_is_unset() {
    let sys = Fake::default()
        .cmd("print-nothing", 0, "\n")
        .file("/run/secrets/empty", "");
    for (text, key) in [
        ("[mesos]\napi_token_cmd = print-nothing\n", "api_token"),
        (
            "[mesos]\napi_token_secret = /run/secrets/empty\n",
            "api_token",
        ),
        (
            "[mesos]\ndocker_registry_password_secret = /run/secrets/empty\n",
            "docker_registry_password",
        ),
    ] {
        let e = load_with(Some(text), &[], &sys).unwrap_err();
        assert_eq!(e.errors.len(), 1, "{e}");
        let msg = e.errors[0].to_string();
        assert!(
            msg.contains(&format!("[mesos] {key}")) && msg.contains("non-empty secret"),
            "{msg}"
        );
    }
    let l = load_with(Some("[mesos]\napi_token =\n"), &[], &sys).unwrap();
    assert!(l.config.api_token.is_none());
}

// ------------------------------------------------------------------------------------------
// secrets never leak
// ------------------------------------------------------------------------------------------

#[test]
fn secrets_are_absent_from_show_and_check_output() {
    let sys = fake_files();
    let loaded = load_with(Some(ALL_KEYS), &[], &sys);
    let (code, table) = show(loaded.clone(), false);
    assert_eq!(code, 0);
    let (code, json) = show(loaded.clone(), true);
    assert_eq!(code, 0);
    let (_, checked) = check(loaded.clone());
    let debug = format!("{:?}", loaded.unwrap());
    for s in SECRETS {
        for (what, out) in [
            ("table", &table),
            ("json", &json),
            ("check", &checked),
            ("debug", &debug),
        ] {
            assert!(!out.contains(s), "{s} leaked into {what}:\n{out}");
        }
    }
}

#[test]
fn secrets_are_absent_from_errors() {
    // An invalid configuration that also holds every secret.
    let text = ALL_KEYS.replace("task_cpu = 0.25", "task_cpu = -1");
    let sys = fake_files();
    let e = load_with(Some(&text), &[], &sys).unwrap_err();
    let (code, out) = check(Err(e.clone()));
    assert_eq!(code, 64);
    let (code, json) = show(Err(e.clone()), true);
    assert_eq!(code, 64);
    for s in SECRETS {
        assert!(
            !out.contains(s) && !json.contains(s) && !format!("{e:?}").contains(s),
            "{s}"
        );
    }
    // A secret value of the wrong shape is reported without the value.
    let e = errs(
        None,
        &[(
            "AIRFLOW__MESOS__DATABASE_URL",
            "oracle://scott:tiger-pw@h/x",
        )],
    );
    assert!(!e.to_string().contains("tiger-pw"), "{e}");
    assert!(e.to_string().contains("oracle://scott:***@h/x"), "{e}");
}

#[test]
fn failing_cmd_reports_status_only_never_its_output() {
    // A real process that prints the secret on stdout and stderr, then fails.
    let script = "echo hunter2-cmd-secret; echo hunter2-cmd-secret >&2; exit 3";
    let text = format!("[mesos]\ndefault_secret_cmd = sh -c '{script}'\n");
    let e = load_with(Some(&text), &[], &RealSystem::default()).unwrap_err();
    assert_eq!(
        e.errors[0].to_string(),
        format!("{PATH}:2: command for [mesos] default_secret_cmd exited with status 3")
    );
    let (code, out) = check(Err(e.clone()));
    assert_eq!(code, 64);
    assert!(
        !out.contains("hunter2") && !format!("{e:?}").contains("hunter2"),
        "{out}"
    );
    // The same from the environment, and a command that cannot start.
    let e = load_with(
        None,
        &[(
            "AIRFLOW__MESOS__API_TOKEN_CMD",
            "/nonexistent/bin/get-token hunter2-arg",
        )],
        &RealSystem::default(),
    )
    .unwrap_err();
    let msg = e.errors[0].to_string();
    assert!(msg.starts_with("environment variable AIRFLOW__MESOS__API_TOKEN_CMD: command for [mesos] api_token_cmd could not be started"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    // Unbalanced quotes.
    let e = load_with(
        Some("[mesos]\napi_password_cmd = echo 'x\n"),
        &[],
        &RealSystem::default(),
    )
    .unwrap_err();
    assert!(e.errors[0]
        .to_string()
        .contains("command for [mesos] api_password_cmd is not a valid command line"));
}

#[test]
fn hanging_cmd_is_killed_and_reported() {
    let sys = RealSystem {
        command_timeout: std::time::Duration::from_millis(200),
    };
    let e = load_with(Some("[mesos]\napi_token_cmd = sleep 30\n"), &[], &sys).unwrap_err();
    assert_eq!(
        e.errors[0].to_string(),
        format!("{PATH}:2: command for [mesos] api_token_cmd did not finish within 0.2 s and was killed")
    );
}

#[test]
fn successful_real_cmd_is_used_without_a_shell() {
    let l = load_with(
        Some("[mesos]\napi_token_cmd = printf '%%s\\n' 'tok $HOME'\n"),
        &[],
        &RealSystem::default(),
    )
    .unwrap();
    // No shell: $HOME inside single quotes reaches printf literally.
    assert_eq!(l.config.api_token.unwrap().expose(), "tok $HOME");
    assert_eq!(entry_source(&l.entries, "api_token"), "cmd (file:2)");
}

fn entry_source(entries: &[airflow_mesos::config::Entry], key: &str) -> String {
    entries
        .iter()
        .find(|e| e.key == key)
        .unwrap()
        .source
        .to_string()
}

#[test]
fn secret_file_is_read_and_trailing_newline_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("token");
    std::fs::write(&p, "file-token\n").unwrap();
    let l = load_with(
        None,
        &[("AIRFLOW__MESOS__API_TOKEN_SECRET", p.to_str().unwrap())],
        &RealSystem::default(),
    )
    .unwrap();
    assert_eq!(l.config.api_token.unwrap().expose(), "file-token");
}

// ------------------------------------------------------------------------------------------
// `config show` / `config check`
// ------------------------------------------------------------------------------------------

#[test]
fn show_table_lists_value_and_source() {
    let text = "[mesos]\nmaster = m1:5050\ndefault_principal = p\n";
    let l = load_with(
        Some(text),
        &[
            ("AIRFLOW__MESOS__TASK_CPU", "2"),
            ("AIRFLOW__MESOS__DEFAULT_SECRET", "pw-env"),
        ],
        &Fake::default(),
    );
    let (code, out) = show(l, false);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("configuration file: {PATH}\n")),
        "{out}"
    );
    let row = |key: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no row {key} in\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("master"), "master m1:5050 file:2");
    assert_eq!(row("task_cpu"), "task_cpu 2 env AIRFLOW__MESOS__TASK_CPU");
    assert_eq!(
        row("default_secret"),
        "default_secret *** env AIRFLOW__MESOS__DEFAULT_SECRET"
    );
    assert_eq!(row("task_memory"), "task_memory 256 default");
    assert_eq!(
        row("docker_image_slave"),
        "docker_image_slave (unset) default"
    );
    assert!(!out.contains("pw-env"));
    for k in KEYS {
        row(k.name);
    }
}

#[test]
fn show_json_has_path_entries_and_warnings() {
    let l = load_with(
        Some("[mesos]\ntask_cpu = 2\ntypo_key = 1\napi_token = tok-json\n"),
        &[],
        &Fake::default(),
    );
    let (code, out) = show(l, true);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["path"], PATH);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), KEYS.len());
    let cpu = entries.iter().find(|e| e["key"] == "task_cpu").unwrap();
    assert_eq!(cpu["value"], "2");
    assert_eq!(cpu["source"], "file:2");
    let tok = entries.iter().find(|e| e["key"] == "api_token").unwrap();
    assert_eq!(tok["value"], "***");
    let img = entries
        .iter()
        .find(|e| e["key"] == "docker_image_slave")
        .unwrap();
    assert!(img["value"].is_null());
    assert_eq!(img["source"], "default");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1);
    assert!(v["warnings"][0].as_str().unwrap().contains("typo_key"));
    assert!(!out.contains("tok-json"));
}

#[test]
fn show_says_when_the_default_file_is_missing() {
    let sys = Fake::default();
    let src = Sources {
        file: FileInput::Missing("/home/af/airflow/airflow.cfg".into()),
        env: base_env(&[]),
        system: &sys,
    };
    let l = load(&src).unwrap();
    assert_eq!(
        l.file,
        FileStatus::Missing("/home/af/airflow/airflow.cfg".into())
    );
    let (code, out) = show(Ok(l), false);
    assert_eq!(code, 0);
    assert!(out.contains("configuration file: /home/af/airflow/airflow.cfg (not found: using defaults and the environment)"), "{out}");
}

#[test]
fn check_prints_ok_and_warnings() {
    let (code, out) = check(Ok(ok(Some("[mesos]\nmaster = m\nmastr = x\n"), &[])));
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("configuration OK (configuration file: {PATH})")),
        "{out}"
    );
    assert!(
        out.contains("mastr is not a known key and is ignored (did you mean master?)"),
        "{out}"
    );
}

// ------------------------------------------------------------------------------------------
// real-world files
// ------------------------------------------------------------------------------------------

fn fixture(name: &str) -> (PathBuf, String) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, text)
}

#[test]
fn airflow_1_10_config_loads_unchanged() {
    let (p, text) = fixture("tests/fixtures/airflow-1.10.cfg");
    let sys = Fake::default();
    let l = load(&Sources::new(base_env(&[]), &sys).with_file(&p, text.clone())).unwrap();
    let c = &l.config;
    assert_eq!(
        c.master,
        MasterAddr::Hosts(vec!["http://localhost:5050".into()])
    );
    assert_eq!(c.backend, Backend::Mesos);
    assert_eq!(c.framework_name, "Airflow");
    assert_eq!((c.task_cpu, c.task_memory), (1.0, 256.0));
    assert!(!c.checkpoint && !c.authenticate);
    assert_eq!(c.failover_timeout, 604800.0);
    assert_eq!(
        (c.default_principal.as_ref(), c.default_secret.as_ref()),
        (None, None)
    );
    assert_eq!(c.docker_image_slave, None);
    // Airflow's own database is not ours.
    assert_eq!(c.database_url, "sqlite:/home/af/airflow/airflow-mesos.db");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(
        entry(&l, "task_cpu").source,
        Source::File {
            line: line_of(&text, "task_cpu")
        }
    );
    // The same block with the commented 1.10 examples switched on.
    let on = text
        .replace("# failover_timeout = 604800", "failover_timeout = 604800")
        .replace("authenticate = False", "authenticate = True")
        .replace("# default_principal = admin", "default_principal = admin")
        .replace("# default_secret = admin", "default_secret = admin")
        .replace(
            "# docker_image_slave = puckel",
            "docker_image_slave = puckel",
        );
    let l = load(&Sources::new(base_env(&[]), &sys).with_file(&p, on)).unwrap();
    assert!(l.config.authenticate);
    assert_eq!(l.config.default_principal.as_deref(), Some("admin"));
    assert_eq!(l.config.default_secret.as_ref().unwrap().expose(), "admin");
    assert_eq!(
        l.config.docker_image_slave.as_deref(),
        Some("puckel/docker-airflow")
    );
}

#[test]
fn aventer_config_loads_unchanged() {
    let (p, text) = fixture("tests/fixtures/aventer.cfg");
    let sys = Fake::default();
    let l = load(&Sources::new(base_env(&[]), &sys).with_file(&p, text)).unwrap();
    let c = &l.config;
    assert_eq!(
        c.master,
        MasterAddr::Hosts(vec!["https://leader.mesos:5050".into()])
    );
    assert!(c.mesos_ssl && c.checkpoint && c.authenticate && c.command_shell);
    assert_eq!(c.framework_role, "airflow");
    assert_eq!(
        (c.task_cpu, c.task_memory, c.task_disk),
        (0.1, 512.0, 1000.0)
    );
    assert_eq!(
        c.default_secret.as_ref().unwrap().expose(),
        "mesos-principal-secret"
    );
    assert_eq!(
        c.docker_image_slave.as_deref(),
        Some("avhost/docker-airflow:v2.7.1")
    );
    assert_eq!(c.docker_network_mode, NetworkMode::Bridge);
    assert_eq!(
        c.docker_volumes,
        vec![
            DefaultVolume {
                name: "airflowdags".into(),
                container_path: "/home/airflow/airflow/dags/".into(),
                driver: Some("local".into())
            },
            DefaultVolume {
                name: "airflowlogs".into(),
                container_path: "/home/airflow/airflow/logs/".into(),
                driver: Some("local".into())
            },
        ]
    );
    assert_eq!(c.docker_sock.as_deref(), Some("/var/run/docker.sock"));
    assert_eq!(c.docker_user_group_id.as_deref(), Some("999"));
    assert_eq!(
        c.docker_environment,
        vec![
            (
                "AIRFLOW__CORE__DEFAULT_TIMEZONE".into(),
                "Europe/Berlin".into()
            ),
            ("TZ".into(), "Europe/Berlin".into())
        ]
    );
    assert_eq!(
        c.mesos_attributes,
        vec!["airflow:true".to_string(), "gpu:true?:cpu:true".into()]
    );
    assert_eq!(
        c.mesos_fetch_uri.as_deref(),
        Some("http://dags.example.invalid:8000")
    );
    assert_eq!(c.api_username.as_deref(), Some("apiuser"));
    assert_eq!(
        c.api_password.as_ref().unwrap().expose(),
        "api-basic-password"
    );
    // [database] sql_alchemy_conn is Airflow's, not ours.
    assert!(c.database_url.starts_with("sqlite:/home/af/airflow/"));
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(l.warnings[0].contains("operator_api_url"));
}

#[test]
fn aventer_quoted_values_of_older_releases_load() {
    let text = "[mesos]\ndocker_image_slave = \"avhost/airflow:1\"\ndocker_volume_dag_name = \"dags\"\ndocker_volume_dag_container_path = \"/dags\"\ndocker_environment = '[{ \"name\":\"K\", \"value\":\"V\" }]'\ndocker_network_mode = HOST\n";
    let l = ok(Some(text), &[]);
    assert_eq!(
        l.config.docker_image_slave.as_deref(),
        Some("avhost/airflow:1")
    );
    assert_eq!(l.config.docker_volumes[0].container_path, "/dags");
    assert_eq!(l.config.docker_environment, vec![("K".into(), "V".into())]);
    assert_eq!(l.config.docker_network_mode, NetworkMode::Host);
}

#[test]
fn example_config_documents_every_key_and_loads_cleanly() {
    let (p, text) = fixture("config/airflow.cfg");
    for k in KEYS {
        let active = text
            .lines()
            .any(|l| l.split('=').next().unwrap().trim() == k.name && l.contains('='));
        assert!(active, "config/airflow.cfg has no `{} =` line", k.name);
    }
    let sys = Fake::default();
    let l = load(&Sources::new(base_env(&[]), &sys).with_file(&p, text)).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(l.config.backend, Backend::Mesos);
    assert_eq!(l.config.failover_timeout, 604800.0);
    let (code, out) = check(Ok(l));
    assert_eq!(code, 0);
    assert!(out.starts_with("configuration OK"));
}

// ------------------------------------------------------------------------------------------
// the binary: `load_from_process` with a real environment, file and commands
// ------------------------------------------------------------------------------------------

fn binary(args: &[&str], env: &[(&str, &str)], home: &Path) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_airflow-mesos"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("USER", "binuser");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run airflow-mesos");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn binary_finds_the_file_like_airflow_and_env_wins() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let af = home.join("afhome");
    std::fs::create_dir_all(&af).unwrap();
    std::fs::write(
        af.join("airflow.cfg"),
        "[core]\nexecutor = MesosExecutor\n\n[mesos]\nmaster = m1:5050\ntask_cpu = 2\napi_token_cmd = printf bin-secret-token\n",
    )
    .unwrap();
    let (code, out, err) = binary(
        &["config", "show", "--json"],
        &[
            ("AIRFLOW_HOME", af.to_str().unwrap()),
            ("AIRFLOW__MESOS__TASK_CPU", "4"),
        ],
        home,
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["path"], af.join("airflow.cfg").display().to_string());
    let get = |k: &str| {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == k)
            .unwrap()
            .clone()
    };
    assert_eq!(get("task_cpu")["value"], "4");
    assert_eq!(get("task_cpu")["source"], "env AIRFLOW__MESOS__TASK_CPU");
    assert_eq!(get("master")["source"], "file:5");
    assert_eq!(get("api_token")["value"], "***");
    assert_eq!(get("api_token")["source"], "cmd (file:7)");
    assert_eq!(get("framework_user")["value"], "binuser");
    assert!(!out.contains("bin-secret-token") && !err.contains("bin-secret-token"));

    // $AIRFLOW_CONFIG beats $AIRFLOW_HOME; --config beats both.
    let other = home.join("other.cfg");
    std::fs::write(&other, "[mesos]\ntask_cpu = 3\n").unwrap();
    let (code, out, _) = binary(
        &["config", "show", "--json"],
        &[
            ("AIRFLOW_HOME", af.to_str().unwrap()),
            ("AIRFLOW_CONFIG", other.to_str().unwrap()),
        ],
        home,
    );
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("\"path\": \"{}\"", other.display())),
        "{out}"
    );
    let (code, out, _) = binary(
        &[
            "--config",
            af.join("airflow.cfg").to_str().unwrap(),
            "config",
            "check",
        ],
        &[("AIRFLOW_CONFIG", other.to_str().unwrap())],
        home,
    );
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!(
            "configuration OK (configuration file: {})",
            af.join("airflow.cfg").display()
        )),
        "{out}"
    );
}

#[test]
fn binary_exits_64_listing_every_problem_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.cfg");
    std::fs::write(
        &cfg,
        "[mesos]\ntask_cpu = abc\nauthenticate = yes-please\nmaster = zk://host\ndefault_secret_cmd = sh -c 'echo bin-hunter2; echo bin-hunter2 >&2; exit 5'\n",
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let (code, out, err) = binary(&["--config", cfg_s, "config", "check"], &[], dir.path());
    assert_eq!(code, 64, "{out}{err}");
    for want in [
        format!("{cfg_s}:2: [mesos] task_cpu = \"abc\""),
        format!("{cfg_s}:3: [mesos] authenticate = \"yes-please\""),
        format!("{cfg_s}:4: [mesos] master = \"zk://host\""),
        format!("{cfg_s}:5: command for [mesos] default_secret_cmd exited with status 5"),
    ] {
        assert!(out.contains(&want), "{want} not in\n{out}");
    }
    assert!(
        !out.contains("bin-hunter2") && !err.contains("bin-hunter2"),
        "{out}{err}"
    );
    // A missing --config file is an error; a missing default file is not.
    let (code, out, _) = binary(
        &["--config", "/nonexistent/airflow.cfg", "config", "check"],
        &[],
        dir.path(),
    );
    assert_eq!(code, 64);
    assert!(
        out.contains(
            "/nonexistent/airflow.cfg: the configuration file given with --config does not exist"
        ),
        "{out}"
    );
    let (code, out, _) = binary(&["config", "check"], &[], dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("not found: using defaults"), "{out}");
}

#[test]
fn bad_policy_values_name_their_key_and_line() {
    let text = "[mesos]
allow_privileged = maybe
allowed_host_paths = /srv/data, relative/path
allowed_users = a b
allowed_network_modes = bridge, overlay
allowed_images = reg.example.com/app:1.0
max_task_cpu = 0.5
allowed_docker_parameters = shm-size, volume
allowed_origins = https://ok.example.com, evil
allowed_host_paths_typo = x
kill_grace_period = 1e20
sandbox_retention = 1e300
";
    let e = errs(Some(text), &[]);
    let got: Vec<(Option<&str>, String)> =
        e.errors.iter().map(|x| (x.key(), x.to_string())).collect();
    for (key, line, says) in [
        ("allow_privileged", 2, "boolean"),
        ("allowed_host_paths", 3, "`relative/path`: an absolute path"),
        ("allowed_users", 4, "`a b`"),
        ("allowed_network_modes", 5, "`overlay`"),
        ("allowed_images", 6, "without tag"),
        ("max_task_cpu", 7, "less than [mesos] task_cpu"),
        ("allowed_docker_parameters", 8, "`volume`: never allowed"),
        ("allowed_origins", 9, "`evil`"),
        ("kill_grace_period", 11, "from 0 to 86400"),
        ("sandbox_retention", 12, "at most 1e12"),
    ] {
        let (_, msg) = got
            .iter()
            .find(|(k, _)| *k == Some(key))
            .unwrap_or_else(|| panic!("no error for {key}: {got:#?}"));
        assert!(
            msg.starts_with(&format!("{PATH}:{line}: [mesos] {key}")) && msg.contains(says),
            "{key}: {msg}"
        );
    }
    assert_eq!(got.len(), 10, "{got:#?}");
}

#[test]
fn docker_privileged_is_the_operators_choice_for_every_task() {
    // docker_privileged runs every task privileged with the socket mounted: the enforced
    // policy then allows both, and nothing else.
    let l = ok(
        Some("[mesos]\ndocker_privileged = true\ndocker_sock = /run/docker.sock\n"),
        &[],
    );
    assert!(!l.config.policy.allow_privileged);
    let p = l.config.task_policy();
    assert!(p.allow_privileged);
    assert_eq!(p.host_paths, vec![PathBuf::from("/run/docker.sock")]);
    let l = ok(Some("[mesos]\n"), &[]);
    assert_eq!(l.config.task_policy(), l.config.policy);
}

#[test]
fn api_connection_limits_have_defaults_and_bounds() {
    let c = ok(Some("[mesos]\n"), &[]).config;
    assert_eq!(
        (
            c.api_max_connections,
            c.api_header_timeout,
            c.api_idle_timeout
        ),
        (1024, 10.0, 60.0)
    );
    let c = ok(
        Some("[mesos]\napi_max_connections = 64\napi_header_timeout = 2.5\napi_idle_timeout = 5\n"),
        &[],
    )
    .config;
    assert_eq!(
        (
            c.api_max_connections,
            c.api_header_timeout,
            c.api_idle_timeout
        ),
        (64, 2.5, 5.0)
    );
    let e = errs(
        Some("[mesos]\napi_max_connections = 0\napi_header_timeout = NaN\napi_idle_timeout = -1\n"),
        &[],
    );
    let keys: Vec<Option<&str>> = e.errors.iter().map(|x| x.key()).collect();
    for key in [
        "api_max_connections",
        "api_header_timeout",
        "api_idle_timeout",
    ] {
        assert!(keys.contains(&Some(key)), "{key}: {e}");
    }
    assert!(e.to_string().contains("from 1 to 1000000"), "{e}");
}

#[test]
fn config_show_masks_credentials_in_every_url_like_key() {
    let file = "[mesos]\n\
        master = zk://zkuser:zk-secret-1@z1:2181,z2:2181/mesos\n\
        database_url = postgresql://am:db-secret-2@db:5432/am?sslpassword=db-secret-3\n\
        api_url = http://api:api-secret-4@d1:11000,http://d2:11000\n\
        public_url = https://edge.example/?token=api-secret-5\n\
        docker_credentials_uri = https://files.example/docker.tar.gz?X-Amz-Signature=sig-secret-6&X-Amz-Credential=cred-secret-7\n\
        mesos_fetch_uri = https://fetch:fetch-secret-8@files.example/x.tar.gz\n\
        allowed_origins = https://ui.example,https://other.example\n\
        docker_registry = https://reg:reg-secret-10@registry.example:5000\n\
        docker_registry_username = reg\n\
        docker_registry_password = reg-secret-11\n";
    let secrets = [
        "zk-secret-1",
        "db-secret-2",
        "db-secret-3",
        "api-secret-4",
        "api-secret-5",
        "sig-secret-6",
        "cred-secret-7",
        "fetch-secret-8",
        "reg-secret-10",
        "reg-secret-11",
    ];
    for json in [false, true] {
        let (code, text) = show(load_with(Some(file), &[], &fake_files()), json);
        assert_eq!(code, 0, "{text}");
        for s in secrets {
            assert!(!text.contains(s), "json={json}: {s} shown:\n{text}");
        }
        // What is not secret stays readable.
        for s in [
            "z1:2181",
            "files.example/docker.tar.gz",
            "ui.example",
            "registry.example:5000",
        ] {
            assert!(text.contains(s), "json={json}: {s} missing:\n{text}");
        }
    }
}

#[test]
fn a_bad_list_item_is_named_without_its_password() {
    let e = errs(
        Some("[mesos]\nallowed_origins = https://ok.example,https://u:origin-secret@bad.example\n"),
        &[],
    )
    .to_string();
    assert!(!e.contains("origin-secret"), "{e}");
    assert!(e.contains("https://u:***@bad.example"), "{e}");
}

#[test]
fn config_check_refuses_what_the_scheduler_refuses_at_start() {
    let file = "[mesos]\nmaster = m:5050\nauthenticate = True\n\
                default_principal = a:b\ndefault_secret = s\n";
    let (code, text) = check(load_with(Some(file), &[], &fake_files()));
    assert_eq!(code, EXIT_CONFIG, "{text}");
    assert!(
        text.contains("[mesos] default_principal must not contain ':'"),
        "{text}"
    );
}
