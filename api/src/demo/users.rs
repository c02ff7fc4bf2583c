//! The demo portal's users: a TOML file of user type, User ID, name, email and an Argon2id
//! password hash, written by `spse-totp demo add-user`. The real portal has its own user
//! database; the TOTP service never sees a password.

use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read or write the demo users file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("demo users file {path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("demo users file: {0}")]
    Serialize(#[from] toml::ser::Error),
    #[error("password hash: {0}")]
    Hash(String),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DemoUser {
    /// `penyedia` or `non_penyedia`.
    pub user_type: String,
    pub user_id: String,
    pub name: String,
    pub email: String,
    /// Argon2id, PHC string format.
    pub password_hash: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<DemoUser>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UsersError + '_ {
    move |source| UsersError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The users in `path`; none when the file does not exist yet.
pub fn load(path: &Path) -> Result<Vec<DemoUser>, UsersError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    let file: UsersFile = toml::from_str(&text).map_err(|source| UsersError::Parse {
        path: path.display().to_string(),
        source,
    })?;
    Ok(file.users)
}

pub fn hash_password(password: &str) -> Result<String, UsersError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| UsersError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

/// Adds the user, or replaces the one with the same user type and User ID (case-insensitive),
/// with the password hashed. The file is readable by its owner only: it holds password hashes.
pub fn add_user(
    path: &Path,
    user_type: &str,
    user_id: &str,
    name: &str,
    email: &str,
    password: &str,
) -> Result<DemoUser, UsersError> {
    if !matches!(user_type, "penyedia" | "non_penyedia") {
        return Err(UsersError::Invalid(format!(
            "user type {user_type:?} is not penyedia or non_penyedia"
        )));
    }
    if user_id.trim().is_empty() || password.is_empty() {
        return Err(UsersError::Invalid(
            "the User ID and the password must not be empty".to_owned(),
        ));
    }
    let mut users = load(path)?;
    users.retain(|u| !(u.user_type == user_type && u.user_id.eq_ignore_ascii_case(user_id)));
    let user = DemoUser {
        user_type: user_type.to_owned(),
        user_id: user_id.trim().to_owned(),
        name: name.trim().to_owned(),
        email: email.trim().to_owned(),
        password_hash: hash_password(password)?,
    };
    users.push(user.clone());
    let text = toml::to_string_pretty(&UsersFile { users })?;
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(io(path))?;
    }
    write_private(path, text.as_bytes()).map_err(io(path))?;
    Ok(user)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(0o600);
        let mut file = options.open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }
}

/// The user whose password this is. An unknown user costs a hash check too, so the answer's
/// timing does not tell which User IDs exist.
pub fn authenticate(
    users: &[DemoUser],
    user_type: &str,
    user_id: &str,
    password: &str,
) -> Option<DemoUser> {
    let found = users
        .iter()
        .find(|u| u.user_type == user_type && u.user_id.eq_ignore_ascii_case(user_id.trim()));
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("no such user").unwrap_or_default());
    let hash = found.map_or(dummy.as_str(), |u| u.password_hash.as_str());
    let matches = PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false);
    found.filter(|_| matches).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_added_signs_in_with_that_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("users.toml");
        add_user(
            &path,
            "non_penyedia",
            "ppk1",
            "PPK Satu",
            "ppk1@example.go.id",
            "rahasia",
        )
        .unwrap();
        add_user(
            &path,
            "penyedia",
            "vendor01",
            "Vendor",
            "v@example.go.id",
            "lain",
        )
        .unwrap();
        let users = load(&path).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users[0].password_hash.starts_with("$argon2id$"));
        assert!(!std::fs::read_to_string(&path).unwrap().contains("rahasia"));
        assert!(authenticate(&users, "non_penyedia", "PPK1", "rahasia").is_some());
        assert!(authenticate(&users, "non_penyedia", "ppk1", "salah").is_none());
        assert!(authenticate(&users, "penyedia", "ppk1", "rahasia").is_none());
        assert!(authenticate(&users, "penyedia", "nobody", "rahasia").is_none());
        // Added again: replaced, not duplicated.
        add_user(
            &path,
            "non_penyedia",
            "PPK1",
            "PPK Satu",
            "ppk1@example.go.id",
            "baru",
        )
        .unwrap();
        let users = load(&path).unwrap();
        assert_eq!(users.len(), 2);
        assert!(authenticate(&users, "non_penyedia", "ppk1", "baru").is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
