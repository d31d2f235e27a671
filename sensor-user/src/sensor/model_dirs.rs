//! Model directories: the configured directories whose files are models whatever their name,
//! looked up off the loop (they may lie under any user's home, on any filesystem) and put into
//! the kernel's filter once they exist. It owns the list of directories in force.

use std::path::PathBuf;

use sensor_ebpf::FileId;

use super::resolver::{Job, Resolver};
use crate::{
    config,
    loader::{KernelMaps, LoaderError},
};

#[derive(Default)]
pub struct ModelDirs {
    in_force: Vec<(PathBuf, FileId)>,
}

impl ModelDirs {
    /// Asks the resolver for the configured directories (`~/` expanded for every local user);
    /// those that exist come back through [`ModelDirs::on_found`].
    pub fn look_for(&self, specs: &[String], resolver: &mut Resolver) {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let dirs: Vec<PathBuf> = specs.iter().flat_map(|spec| config::expand_home(spec, &passwd)).collect();
        if !dirs.is_empty() && !resolver.submit(Job::Dirs(dirs)) {
            tracing::debug!("file lookups queue full: model directories looked for next time");
        }
    }

    /// Takes the directories in force that `specs` no longer name out of the kernel's filter
    /// (a configuration reload); those it names that are not in force yet come with the next
    /// [`ModelDirs::look_for`].
    pub fn retain(&mut self, specs: &[String], maps: &mut KernelMaps) -> Result<(), LoaderError> {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let named: Vec<PathBuf> = specs.iter().flat_map(|spec| config::expand_home(spec, &passwd)).collect();
        let gone = self.dropped(&named);
        if gone.is_empty() {
            return Ok(());
        }
        let ids: Vec<FileId> = gone.iter().map(|(_, id)| *id).collect();
        maps.remove_model_dirs(&ids)?;
        for (dir, _) in &gone {
            tracing::info!(dir = %dir.display(), "no longer watching model directory");
        }
        self.in_force.retain(|(_, id)| !ids.contains(id));
        Ok(())
    }

    /// The directories in force whose path is not in `named`.
    fn dropped(&self, named: &[PathBuf]) -> Vec<(PathBuf, FileId)> {
        self.in_force.iter().filter(|(p, _)| !named.contains(p)).cloned().collect()
    }

    /// The directories in force.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.in_force.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Puts the directories that are new in force. On an error, those added before it are in
    /// force and the rest are tried again at the next lookup.
    pub fn on_found(&mut self, found: Vec<(PathBuf, FileId)>, maps: &mut KernelMaps) -> Result<(), LoaderError> {
        let new_dirs = self.new_ones(found);
        if new_dirs.is_empty() {
            return Ok(());
        }
        let ids: Vec<FileId> = new_dirs.iter().map(|(_, id)| *id).collect();
        let (added, result) = maps.add_model_dirs(&ids);
        for (dir, id) in new_dirs.into_iter().take(added) {
            tracing::info!(dir = %dir.display(), "watching model directory");
            self.in_force.push((dir, id));
        }
        result
    }

    /// The directories of `found` not in force yet, each once (two paths may name one directory).
    fn new_ones(&self, found: Vec<(PathBuf, FileId)>) -> Vec<(PathBuf, FileId)> {
        let mut new_dirs: Vec<(PathBuf, FileId)> = Vec::new();
        for (dir, id) in found {
            if !self.in_force.iter().any(|(_, known)| *known == id) && !new_dirs.iter().any(|(_, n)| *n == id) {
                new_dirs.push((dir, id));
            }
        }
        new_dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ino: u64) -> FileId {
        FileId { dev: 1, _pad0: 0, ino }
    }

    #[test]
    fn directories_no_longer_named_are_dropped() {
        let mut dirs = ModelDirs::default();
        dirs.in_force.push((PathBuf::from("/a"), id(1)));
        dirs.in_force.push((PathBuf::from("/b"), id(2)));
        let gone = dirs.dropped(&[PathBuf::from("/b"), PathBuf::from("/c")]);
        assert_eq!(gone, vec![(PathBuf::from("/a"), id(1))]);
        assert!(dirs.dropped(&[PathBuf::from("/a"), PathBuf::from("/b")]).is_empty());
    }

    #[test]
    fn only_directories_not_in_force_are_new_and_each_once() {
        let mut dirs = ModelDirs::default();
        dirs.in_force.push((PathBuf::from("/a"), id(1)));
        let new = dirs.new_ones(vec![
            (PathBuf::from("/a"), id(1)),
            (PathBuf::from("/b"), id(2)),
            (PathBuf::from("/b-again"), id(2)),
        ]);
        assert_eq!(new, [(PathBuf::from("/b"), id(2))]);
    }
}
