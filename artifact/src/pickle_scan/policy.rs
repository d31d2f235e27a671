//! The judgement of imported globals: an allowlist of what ordinary PyTorch / NumPy / joblib
//! checkpoints need (`safe`), a denylist of globals that run code, touch files or the network
//! (`malicious`), `suspicious` for everything else, and the configured `module.name` /
//! `module.*` additions ([`GlobalPattern`]). A dotted name is an attribute path from its module,
//! so the deny lists apply to every prefix of `module.name`. Python 2 spellings are mapped to
//! Python 3 ones first ([`super::compat`]).

use super::{compat::normalise, walker::Import};
use crate::report::Safety;

/// A `module.name` or `module.*` pattern from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalPattern {
    pub module: String,
    /// `None` matches every name in the module and its submodules.
    pub name: Option<String>,
}

impl GlobalPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let Some((module, name)) = s.rsplit_once('.') else {
            return Err(format!("`{s}` is not `module.name` or `module.*`"));
        };
        let ident = |x: &str| {
            !x.is_empty() && x.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        };
        if !ident(module) || !(name == "*" || ident(name)) {
            return Err(format!("`{s}` is not `module.name` or `module.*`"));
        }
        Ok(Self { module: module.to_owned(), name: (name != "*").then(|| name.to_owned()) })
    }

    /// Deny: the pattern covers `path` (`module.name`) when `path` is the pattern's global,
    /// an attribute reached from it, or (for `module.*`) anything inside the module.
    fn denies(&self, path: &str) -> bool {
        match &self.name {
            Some(n) => in_module(path, &format!("{}.{n}", self.module)),
            None => in_module(path, &self.module),
        }
    }

    /// Allow: `module.name` must be the pattern's global exactly, or for `module.*` a plain
    /// (undotted) name in the module or a submodule: a dotted name may walk out of the module
    /// through a module it imported (`pkg.mod` + `os.system`).
    fn allows(&self, module: &str, name: &str) -> bool {
        match &self.name {
            Some(n) => format!("{module}.{name}") == format!("{}.{n}", self.module),
            None => !name.contains('.') && in_module(module, &self.module),
        }
    }
}

/// The allow/deny judgement, with the configured additions.
#[derive(Debug, Clone, Default)]
pub struct PicklePolicy {
    pub extra_allow: Vec<GlobalPattern>,
    pub extra_deny: Vec<GlobalPattern>,
}

impl PicklePolicy {
    /// Invalid patterns are skipped (the configuration validates them beforehand).
    pub fn new(allow: &[String], deny: &[String]) -> Self {
        let parse = |l: &[String]| l.iter().filter_map(|s| GlobalPattern::parse(s).ok()).collect();
        Self { extra_allow: parse(allow), extra_deny: parse(deny) }
    }

    /// Judges one import.
    pub fn judge(&self, import: &Import) -> Safety {
        let Import::Named { module, name } = import else {
            return Safety::Malicious;
        };
        let (module, name) = normalise(module, name);
        // Attribute chains through dunders reach module globals, builtins or subclasses.
        if name.contains('.') && name.split('.').any(|s| s.starts_with("__") && s.ends_with("__")) {
            return Safety::Malicious;
        }
        // A dotted name is a getattr path from the module: every prefix of it is judged.
        let path = format!("{module}.{name}");
        if self.extra_deny.iter().any(|p| p.denies(&path)) || is_denied(&path) {
            return Safety::Malicious;
        }
        if self.extra_allow.iter().any(|p| p.allows(&module, &name)) || is_allowed(&module, &name) {
            return Safety::Safe;
        }
        Safety::Suspicious
    }
}

/// Modules every attribute of which can run code, touch files or the network, or import more.
const DENY_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "posixpath",
    "ntpath",
    "subprocess",
    "_posixsubprocess",
    "_winapi",
    "pty",
    "socket",
    "_socket",
    "ssl",
    "runpy",
    "webbrowser",
    "importlib",
    "imp",
    "zipimport",
    "pkgutil",
    "ctypes",
    "_ctypes",
    "cffi",
    "sys",
    "code",
    "codeop",
    "multiprocessing",
    "asyncio",
    "pdb",
    "bdb",
    "timeit",
    "marshal",
    "types",
    "cProfile",
    "profile",
    "_lsprof",
    "trace",
    "pickle",
    "_pickle",
    "dill",
    "cloudpickle",
    "shelve",
    "shutil",
    "requests",
    "urllib",
    "urllib3",
    "http",
    "ftplib",
    "smtplib",
    "telnetlib",
    "poplib",
    "imaplib",
    "xmlrpc",
    "socketserver",
    "paramiko",
    "pip",
    "setuptools",
    "distutils",
    "venv",
    "ensurepip",
    "site",
    "signal",
    "_thread",
    "threading",
    "platform",
    "pydoc",
    "idlelib",
    "doctest",
    "_osx_support",
    "_aix_support",
    "tkinter",
    "turtle",
    "gc",
    "linecache",
    "tempfile",
    "glob",
    "fileinput",
    "sqlite3",
    "dbm",
    "mmap",
    "fcntl",
    "resource",
    "ptrace",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.ctypeslib",
    "numpy.testing",
    "torch.hub",
    "torch.utils.cpp_extension",
    "torch.jit",
    "torch.package",
    "torch.ops",
    "torch.classes",
    "torch._C",
    "torch.cuda",
    "torch.distributed",
    "torch.multiprocessing",
    "IPython",
    "jinja2",
    "yaml",
    "subprocess32",
    "commands",
    "popen2",
    "winreg",
    "msvcrt",
];

/// Single callables that run code, open files or reach arbitrary attributes, as `module.name`.
const DENY_NAMES: &[&str] = &[
    "builtins.eval",
    "builtins.exec",
    "builtins.execfile",
    "builtins.compile",
    "builtins.open",
    "builtins.file",
    "builtins.input",
    "builtins.raw_input",
    "builtins.breakpoint",
    "builtins.__import__",
    "builtins.getattr",
    "builtins.setattr",
    "builtins.delattr",
    "builtins.globals",
    "builtins.locals",
    "builtins.vars",
    "builtins.reload",
    "builtins.apply",
    "builtins.exit",
    "builtins.quit",
    "builtins.help",
    "builtins.memoryview",
    "builtins.type",
    "builtins.super",
    "operator.attrgetter",
    "operator.methodcaller",
    "_operator.attrgetter",
    "_operator.methodcaller",
    "codecs.open",
    "codecs.EncodedFile",
    "_codecs.lookup",
    "_codecs.decode",
    "functools.partial",
    "functools.reduce",
    "_functools.partial",
    "_functools.reduce",
    "numpy.load",
    "numpy.loadtxt",
    "numpy.fromfile",
    "numpy.lib.npyio.load",
    "numpy.lib._npyio_impl.load",
    "torch.load",
    "torch.serialization.load",
    "torch.serialization._load",
    "torch.serialization._legacy_load",
    "io.open",
    "io.open_code",
    "io.FileIO",
    "_io.open",
    "_io.open_code",
    "_io.FileIO",
    "torch.storage._load_from_bytes",
    "joblib.load",
    "collections.namedtuple",
    "logging.config.listen",
    "logging.config.fileConfig",
    "uuid._get_command_stdout",
];

fn in_module(module: &str, root: &str) -> bool {
    module == root || module.strip_prefix(root).is_some_and(|r| r.starts_with('.'))
}

/// Whether `path` (`module.name`, the name possibly dotted) is a denied module or callable,
/// or is reached through one: every prefix of the path is checked.
fn is_denied(path: &str) -> bool {
    DENY_MODULES.iter().chain(DENY_NAMES).any(|d| in_module(path, d))
}

/// What a weights checkpoint (torch.save of a state dict, NumPy arrays, joblib arrays) needs.
/// Mirrors the spirit of `torch.load(weights_only=True)`.
const ALLOW_NAMES: &[(&str, &[&str])] = &[
    ("collections", &["OrderedDict", "defaultdict", "Counter", "deque"]),
    (
        "builtins",
        &[
            "set",
            "frozenset",
            "list",
            "dict",
            "tuple",
            "bytearray",
            "bytes",
            "complex",
            "slice",
            "range",
            "int",
            "float",
            "str",
            "bool",
            "object",
        ],
    ),
    ("copyreg", &["_reconstructor", "__newobj__", "__newobj_ex__"]),
    ("_codecs", &["encode"]),
    (
        "torch._utils",
        &[
            "_rebuild_tensor",
            "_rebuild_tensor_v2",
            "_rebuild_tensor_v3",
            "_rebuild_parameter",
            "_rebuild_parameter_with_state",
            "_rebuild_qtensor",
            "_rebuild_sparse_tensor",
            "_rebuild_meta_tensor_no_storage",
            "_rebuild_wrapper_subclass",
            "_rebuild_device_tensor_from_numpy",
            "_rebuild_nested_tensor",
        ],
    ),
    ("torch._tensor", &["_rebuild_from_type_v2", "_rebuild_from_type"]),
    (
        "torch",
        &[
            "FloatStorage",
            "DoubleStorage",
            "HalfStorage",
            "BFloat16Storage",
            "LongStorage",
            "IntStorage",
            "ShortStorage",
            "CharStorage",
            "ByteStorage",
            "BoolStorage",
            "ComplexFloatStorage",
            "ComplexDoubleStorage",
            "QInt8Storage",
            "QUInt8Storage",
            "QInt32Storage",
            "QUInt4x2Storage",
            "QUInt2x4Storage",
            "UntypedStorage",
            "TypedStorage",
            "Size",
            "device",
            "Tensor",
            "float32",
            "float",
            "float64",
            "double",
            "float16",
            "half",
            "bfloat16",
            "complex32",
            "chalf",
            "complex64",
            "cfloat",
            "complex128",
            "cdouble",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
            "int8",
            "int16",
            "short",
            "int32",
            "int",
            "int64",
            "long",
            "bool",
            "qint8",
            "quint8",
            "qint32",
            "quint4x2",
            "quint2x4",
            "float8_e4m3fn",
            "float8_e5m2",
            "float8_e4m3fnuz",
            "float8_e5m2fnuz",
            "strided",
            "sparse_coo",
            "sparse_csr",
            "sparse_csc",
            "sparse_bsr",
            "sparse_bsc",
            "per_tensor_affine",
            "per_channel_affine",
            "per_tensor_symmetric",
            "per_channel_symmetric",
            "per_channel_affine_float_qparams",
            "contiguous_format",
            "channels_last",
            "channels_last_3d",
            "preserve_format",
        ],
    ),
    ("torch.storage", &["UntypedStorage", "TypedStorage", "_TypedStorage"]),
    ("torch.nn.parameter", &["Parameter"]),
    ("torch.serialization", &["_get_layout"]),
    ("numpy.core.multiarray", &["_reconstruct", "scalar"]),
    ("numpy._core.multiarray", &["_reconstruct", "scalar"]),
    ("numpy.core.numeric", &["_frombuffer"]),
    ("numpy._core.numeric", &["_frombuffer"]),
    (
        "numpy",
        &[
            "ndarray",
            "dtype",
            "bool_",
            "int8",
            "int16",
            "int32",
            "int64",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
            "float16",
            "float32",
            "float64",
            "longdouble",
            "complex64",
            "complex128",
            "str_",
            "bytes_",
            "void",
        ],
    ),
    ("joblib.numpy_pickle", &["NumpyArrayWrapper"]),
    ("datetime", &["datetime", "date", "time", "timedelta", "timezone"]),
    ("decimal", &["Decimal"]),
    ("fractions", &["Fraction"]),
    ("pathlib", &["Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"]),
    ("argparse", &["Namespace"]),
];

fn is_allowed(module: &str, name: &str) -> bool {
    // NumPy 2's dtype classes (numpy.dtypes.Float32DType, ...) are plain type objects.
    if module == "numpy.dtypes" && name.ends_with("DType") && !name.contains('.') {
        return true;
    }
    // torch.storage._load_from_bytes is denied above; torch.storage types are allowed.
    ALLOW_NAMES.iter().any(|(m, names)| *m == module && names.contains(&name))
}

/// The combined verdict over `imports` and whether the walks completed.
pub fn verdict(policy: &PicklePolicy, imports: &[Import], complete: bool) -> (Safety, Vec<String>) {
    let mut worst = Safety::Safe;
    let mut offending = Vec::new();
    for imp in imports {
        let s = policy.judge(imp);
        if s != Safety::Safe {
            offending.push((s, imp.display()));
        }
        worst = worst.max(s);
    }
    if !complete {
        worst = worst.max(Safety::Suspicious);
    }
    // Show the globals that decided the verdict (the worst ones) first.
    offending.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut out: Vec<String> = Vec::new();
    for (s, g) in offending {
        if s == worst && !out.contains(&g) {
            out.push(g);
        }
    }
    (worst, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle_scan::testing::named;

    #[test]
    fn judge_normalises_and_allowlists() {
        let pol = PicklePolicy::new(&["sklearn.*".into(), "mylib.Outer.Inner".into()], &["mylib.evil".into()]);
        let j = |m: &str, n: &str| pol.judge(&named(m, n));
        assert_eq!(j("__builtin__", "eval"), Safety::Malicious);
        assert_eq!(j("builtins", "getattr"), Safety::Malicious);
        assert_eq!(j("__builtin__", "set"), Safety::Safe);
        assert_eq!(j("torch._utils", "_rebuild_tensor_v2"), Safety::Safe);
        assert_eq!(j("torch._utils", "_rebuild_tensor_v2.__globals__"), Safety::Malicious);
        assert_eq!(j("collections", "OrderedDict"), Safety::Safe);
        assert_eq!(j("os.path", "join"), Safety::Malicious);
        assert_eq!(j("osmium", "x"), Safety::Suspicious);
        assert_eq!(j("commands", "getoutput"), Safety::Malicious);
        assert_eq!(j("operator", "attrgetter"), Safety::Malicious);
        assert_eq!(j("sklearn.linear_model._base", "LinearRegression"), Safety::Safe);
        assert_eq!(j("mylib", "evil"), Safety::Malicious);
        assert_eq!(j("mylib", "evil.x"), Safety::Malicious);
        assert_eq!(j("mylib.evil", "x"), Safety::Malicious);
        assert_eq!(j("mylib", "evilness"), Safety::Suspicious);
        assert_eq!(j("mylib", "fine"), Safety::Suspicious);
        assert_eq!(j("mylib", "Outer.Inner"), Safety::Safe);
        assert_eq!(j("mylib.Outer", "Inner"), Safety::Safe);
        assert_eq!(j("numpy.dtypes", "Float32DType"), Safety::Safe);
        assert_eq!(j("builtins", "set.__class__"), Safety::Malicious);
        assert_eq!(j("builtins", "getattr.x"), Safety::Malicious);
    }

    #[test]
    fn dotted_names_are_module_paths() {
        let pol = PicklePolicy::new(&["sklearn.*".into()], &[]);
        let j = |m: &str, n: &str| pol.judge(&named(m, n));
        // A wildcard allowance does not follow a module the allowed one imported.
        assert_eq!(j("sklearn.datasets._base", "os.system"), Safety::Suspicious);
        assert_eq!(j("sklearn.datasets._base", "load_iris"), Safety::Safe);
        // Denied submodules and callables reached through an allowed module.
        for (m, n) in [
            ("torch", "hub.load"),
            ("torch", "jit.load"),
            ("torch", "serialization.load"),
            ("torch", "hub"),
            ("numpy", "lib.npyio.load"),
            ("numpy.lib", "npyio.load"),
            ("builtins", "getattr"),
        ] {
            assert_eq!(j(m, n), Safety::Malicious, "{m}.{n}");
        }
    }

    #[test]
    fn python2_names_follow_compat_pickle() {
        let pol = PicklePolicy::default();
        let j = |m: &str, n: &str| pol.judge(&named(m, n));
        for (m, n) in [
            ("__builtin__", "reduce"),
            ("__builtin__", "intern"),
            ("xmlrpclib", "ServerProxy"),
            ("SimpleHTTPServer", "test"),
            ("BaseHTTPServer", "HTTPServer"),
            ("Tkinter", "Tk"),
            ("cPickle", "loads"),
            ("urllib", "urlretrieve"),
            ("thread", "start_new_thread"),
        ] {
            assert_eq!(j(m, n), Safety::Malicious, "{m}.{n}");
        }
        assert_eq!(j("__builtin__", "xrange"), Safety::Safe);
    }

    #[test]
    fn pattern_parsing() {
        assert!(GlobalPattern::parse("a.b").is_ok());
        assert!(GlobalPattern::parse("a.b.*").is_ok());
        assert!(GlobalPattern::parse("a").is_err());
        assert!(GlobalPattern::parse("a.").is_err());
        assert!(GlobalPattern::parse("a b.c").is_err());
    }
}
