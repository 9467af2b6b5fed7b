//! `apply_edits`: apply a list of edits (docs/STATE.md) to a state tree, in
//! place or copy on write. Mirrors the `_Applier` of `desiru/_pure/apply.py`,
//! error messages included.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList};
use pyo3::PyTypeInfo;

use super::tree::{copy_tree, exact_str, key, pyrepr, str_eq, str_repr, type_name};
use crate::diff::is_permutation;
use crate::py::error::named_error;

const EDIT_HINT: &str =
    "the edits do not fit this state: apply them to the state they were computed from";

struct Applier<'py> {
    py: Python<'py>,
    root: Bound<'py, PyDict>,
    cache: HashMap<String, Bound<'py, PyDict>>,
    /// Copy on write: what the caller owns already, by id (changed in place); everything else is
    /// shared and copied (shallowly) before it changes, the copy added here. None: all in place.
    own: Option<Bound<'py, PyDict>>,
}

impl<'py> Applier<'py> {
    /// `obj` if it may change in place (no `own`, or the caller's already), else a shallow copy of
    /// this dict or list that is now the caller's.
    fn mine(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let Some(own) = &self.own else {
            return Ok(obj.clone());
        };
        let id = obj.as_ptr() as usize;
        if own.contains(id)? {
            return Ok(obj.clone());
        }
        let copy = if let Ok(d) = obj.downcast_exact::<PyDict>() {
            d.copy()?.into_any()
        } else if let Ok(l) = obj.downcast_exact::<PyList>() {
            l.get_slice(0, l.len()).into_any()
        } else {
            return Ok(obj.clone());
        };
        own.set_item(copy.as_ptr() as usize, &copy)?;
        Ok(copy)
    }

    /// `value` (a list or dict held by `node` at `name`) made the caller's, `node` pointing at it.
    fn mine_field<T: PyTypeInfo>(
        &self,
        node: &Bound<'py, PyDict>,
        name: &str,
        value: &Bound<'py, T>,
    ) -> PyResult<Bound<'py, T>> {
        let mine = self.mine(value.as_any())?;
        if !mine.is(value) {
            node.set_item(key(self.py, name), &mine)?;
        }
        Ok(mine.downcast_into_exact::<T>()?)
    }

    fn fail(&self, n: usize, op: &str, message: &str) -> PyErr {
        named_error(
            self.py,
            "CorruptDataError",
            format!("edit {n} ({op}): {message}"),
            EDIT_HINT,
        )
    }

    fn field(
        &self,
        n: usize,
        op: &str,
        edit: &Bound<'py, PyDict>,
        name: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        edit.get_item(key(self.py, name))?
            .ok_or_else(|| self.fail(n, op, &format!("lacks the key '{name}'")))
    }

    /// The edit's index: an exact int, or an error. Returns the value when it
    /// fits an isize and its text (for messages) either way.
    fn index(
        &self,
        n: usize,
        op: &str,
        edit: &Bound<'py, PyDict>,
    ) -> PyResult<(Option<isize>, String)> {
        let index = self.field(n, op, edit, "index")?;
        if index.downcast_exact::<PyInt>().is_err() {
            return Err(self.fail(
                n,
                op,
                &format!("index must be an int, not '{}'", type_name(&index)?),
            ));
        }
        Ok((index.extract::<isize>().ok(), index.str()?.to_string()))
    }

    fn in_range(index: Option<isize>, upto: usize) -> Option<usize> {
        index
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i <= upto)
    }

    fn resolve(&mut self, n: usize, op: &str, path: &str) -> PyResult<Bound<'py, PyDict>> {
        if let Some(node) = self.cache.get(path) {
            return Ok(node.clone());
        }
        let mut node = self.root.clone();
        if path.is_empty() {
            return Ok(node);
        }
        for name in path.split('.') {
            let mut found = None;
            if let Some(modules) = node.get_item(key(self.py, "modules"))? {
                if let Ok(modules) = modules.downcast_exact::<PyList>() {
                    let modules = self.mine_field(&node, "modules", modules)?;
                    for (i, m) in modules.iter().enumerate() {
                        if let Ok(d) = m.downcast_exact::<PyDict>() {
                            if d.get_item(key(self.py, "name"))?
                                .is_some_and(|x| str_eq(&x, name))
                            {
                                let d = self.mine(d.as_any())?;
                                if !d.is(&m) {
                                    modules.set_item(i, &d)?;
                                }
                                found = Some(d.downcast_into_exact::<PyDict>()?);
                                break;
                            }
                        }
                    }
                }
            }
            match found {
                Some(d) => node = d,
                None => {
                    return Err(named_error(
                        self.py,
                        "UnknownModuleError",
                        format!(
                            "edit {n} ({op}): no module at path {}",
                            str_repr(self.py, path)?
                        ),
                        EDIT_HINT,
                    ))
                }
            }
        }
        self.cache.insert(path.to_string(), node.clone());
        Ok(node)
    }

    fn list_field(
        &self,
        n: usize,
        op: &str,
        node: &Bound<'py, PyDict>,
        path: &str,
        key: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        self.typed_field(n, op, node, path, key, "list")
    }

    fn dict_field(
        &self,
        n: usize,
        op: &str,
        node: &Bound<'py, PyDict>,
        path: &str,
        key: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.typed_field(n, op, node, path, key, "dict")
    }

    /// The value of `key` in `node` if it is exactly a `T` (a list or a dict), else an
    /// error naming the edit and the node.
    fn typed_field<T: PyTypeInfo>(
        &self,
        n: usize,
        op: &str,
        node: &Bound<'py, PyDict>,
        path: &str,
        name: &str,
        what: &str,
    ) -> PyResult<Bound<'py, T>> {
        match node
            .get_item(key(self.py, name))?
            .and_then(|v| v.downcast_exact::<T>().ok().cloned())
        {
            Some(v) => self.mine_field(node, name, &v),
            _ => Err(self.fail(
                n,
                op,
                &format!(
                    "the node at {} has no {name} {what}",
                    str_repr(self.py, path)?
                ),
            )),
        }
    }

    fn need_kind(
        &self,
        n: usize,
        op: &str,
        node: &Bound<'py, PyDict>,
        path: &str,
        kind: &str,
    ) -> PyResult<()> {
        if node
            .get_item(key(self.py, "kind"))?
            .is_some_and(|k| str_eq(&k, kind))
        {
            return Ok(());
        }
        Err(self.fail(
            n,
            op,
            &format!("the node at {} is not a {kind}", str_repr(self.py, path)?),
        ))
    }

    fn apply(&mut self, n: usize, edit: &Bound<'py, PyAny>) -> PyResult<()> {
        let Ok(edit) = edit.downcast_exact::<PyDict>() else {
            return Err(named_error(
                self.py,
                "CorruptDataError",
                format!("edit {n} is not a dict but '{}'", type_name(edit)?),
                EDIT_HINT,
            ));
        };
        let op_obj = edit.get_item(key(self.py, "op"))?;
        let op = op_obj
            .as_ref()
            .and_then(exact_str)
            .and_then(|s| s.to_str().ok())
            .filter(|op| OPS.contains(op));
        let Some(op) = op else {
            let shown = match &op_obj {
                Some(o) => pyrepr(o)?,
                None => "None".to_string(),
            };
            return Err(named_error(
                self.py,
                "CorruptDataError",
                format!("edit {n} has an unknown op {shown}"),
                EDIT_HINT,
            ));
        };
        let path = match edit.get_item(key(self.py, "path"))? {
            Some(p) => match exact_str(&p) {
                Some(s) => s.to_str()?.to_string(),
                None => return Err(self.fail(n, op, "path must be a str")),
            },
            None => return Err(self.fail(n, op, "path must be a str")),
        };
        self.dispatch(n, op, &path, edit)
    }

    fn dispatch(
        &mut self,
        n: usize,
        op: &str,
        path: &str,
        edit: &Bound<'py, PyDict>,
    ) -> PyResult<()> {
        match op {
            "program_created" => self.program_created(n, op, path, edit),
            "module_added" => self.module_added(n, op, path, edit),
            "module_removed" => self.module_removed(n, op, path),
            "signature_set" => {
                let node = self.resolve(n, op, path)?;
                self.need_kind(n, op, &node, path, "module")?;
                node.set_item(
                    key(self.py, "signature"),
                    copy_tree(&self.field(n, op, edit, "signature")?, 0)?,
                )
            }
            "demo_added" => {
                let node = self.resolve(n, op, path)?;
                let (index, shown) = self.index(n, op, edit)?;
                let demo = self.field(n, op, edit, "demo")?;
                let demos = self.list_field(n, op, &node, path, "demos")?;
                let Some(i) = Self::in_range(index, demos.len()) else {
                    let len = demos.len();
                    return Err(self.fail(
                        n,
                        op,
                        &format!("index {shown} is out of range for {len} demos"),
                    ));
                };
                demos.insert(i, copy_tree(&demo, 0)?)
            }
            "demo_removed" => {
                let node = self.resolve(n, op, path)?;
                let (index, shown) = self.index(n, op, edit)?;
                let demos = self.list_field(n, op, &node, path, "demos")?;
                match Self::in_range(index, demos.len()).filter(|&i| i < demos.len()) {
                    Some(i) => demos.del_item(i),
                    None => {
                        let len = demos.len();
                        Err(self.fail(
                            n,
                            op,
                            &format!("index {shown} is out of range for {len} demos"),
                        ))
                    }
                }
            }
            "demos_reordered" => self.demos_reordered(n, op, path, edit),
            "parameter_set" => {
                let node = self.resolve(n, op, path)?;
                let key = self.field(n, op, edit, "key")?;
                let value = self.field(n, op, edit, "value")?;
                let params = self.dict_field(n, op, &node, path, "parameters")?;
                params.set_item(key, copy_tree(&value, 0)?)
            }
            "parameter_unset" => {
                let node = self.resolve(n, op, path)?;
                let key = self.field(n, op, edit, "key")?;
                let params = self.dict_field(n, op, &node, path, "parameters")?;
                if !params.contains(&key)? {
                    let msg = format!(
                        "no parameter {} at {}",
                        pyrepr(&key)?,
                        str_repr(self.py, path)?
                    );
                    return Err(self.fail(n, op, &msg));
                }
                params.del_item(key)
            }
            "metadata_set" => self.set(n, op, path, edit, "metadata", None),
            "configuration_set" => self.set(n, op, path, edit, "configuration", Some("program")),
            _ => self.set(n, op, path, edit, "custom_data", Some("program")),
        }
    }

    fn program_created(
        &mut self,
        n: usize,
        op: &str,
        path: &str,
        edit: &Bound<'py, PyDict>,
    ) -> PyResult<()> {
        if !path.is_empty() {
            return Err(self.fail(n, op, "path must be '' (the root)"));
        }
        let state = self.field(n, op, edit, "state")?;
        let Ok(state) = state.downcast_exact::<PyDict>() else {
            return Err(self.fail(
                n,
                op,
                &format!("state must be a dict, not '{}'", type_name(&state)?),
            ));
        };
        let fresh = copy_tree(state.as_any(), 0)?;
        self.root.clear();
        self.root.update(fresh.downcast::<PyDict>()?.as_mapping())?;
        self.cache.clear();
        Ok(())
    }

    fn module_added(
        &mut self,
        n: usize,
        op: &str,
        path: &str,
        edit: &Bound<'py, PyDict>,
    ) -> PyResult<()> {
        let (parent_path, name) = match path.rfind('.') {
            Some(i) => (path.get(..i).unwrap_or(""), path.get(i + 1..).unwrap_or("")),
            None => ("", path),
        };
        if name.is_empty() {
            return Err(self.fail(
                n,
                op,
                &format!("{} does not name a module", str_repr(self.py, path)?),
            ));
        }
        let (index, shown) = self.index(n, op, edit)?;
        let state = self.field(n, op, edit, "state")?;
        let named = match state.downcast_exact::<PyDict>() {
            Ok(d) => d
                .get_item(key(self.py, "name"))?
                .is_some_and(|x| str_eq(&x, name)),
            Err(_) => false,
        };
        if !named {
            let msg = format!("state must be a dict named {}", str_repr(self.py, name)?);
            return Err(self.fail(n, op, &msg));
        }
        let parent = self.resolve(n, op, parent_path)?;
        let modules = self.list_field(n, op, &parent, parent_path, "modules")?;
        for m in modules.iter() {
            if let Ok(d) = m.downcast_exact::<PyDict>() {
                if d.get_item(key(self.py, "name"))?
                    .is_some_and(|x| str_eq(&x, name))
                {
                    let msg = format!(
                        "a module named {} already exists at {}",
                        str_repr(self.py, name)?,
                        str_repr(self.py, parent_path)?
                    );
                    return Err(self.fail(n, op, &msg));
                }
            }
        }
        let Some(i) = Self::in_range(index, modules.len()) else {
            let len = modules.len();
            return Err(self.fail(
                n,
                op,
                &format!("index {shown} is out of range for {len} modules"),
            ));
        };
        modules.insert(i, copy_tree(&state, 0)?)?;
        self.cache.clear();
        Ok(())
    }

    fn module_removed(&mut self, n: usize, op: &str, path: &str) -> PyResult<()> {
        if path.is_empty() {
            return Err(self.fail(n, op, "the root cannot be removed"));
        }
        let node = self.resolve(n, op, path)?;
        let parent_path = path.rfind('.').and_then(|i| path.get(..i)).unwrap_or("");
        let parent = self.resolve(n, op, parent_path)?;
        let modules = self.list_field(n, op, &parent, parent_path, "modules")?;
        let at = modules.iter().position(|m| m.is(&node));
        if let Some(k) = at {
            modules.del_item(k)?;
        }
        self.cache.clear();
        Ok(())
    }

    fn demos_reordered(
        &mut self,
        n: usize,
        op: &str,
        path: &str,
        edit: &Bound<'py, PyDict>,
    ) -> PyResult<()> {
        let node = self.resolve(n, op, path)?;
        let order = self.field(n, op, edit, "order")?;
        let demos = self.list_field(n, op, &node, path, "demos")?;
        let size = demos.len();
        let mut idx: Vec<usize> = Vec::with_capacity(size);
        let mut ok = false;
        if let Ok(order) = order.downcast_exact::<PyList>() {
            if order.len() == size {
                ok = true;
                for i in order.iter() {
                    match i
                        .downcast_exact::<PyInt>()
                        .ok()
                        .and_then(|i| i.extract::<usize>().ok())
                    {
                        Some(v) if v < size => idx.push(v),
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
            }
        }
        if !ok || !is_permutation(&idx, size) {
            return Err(self.fail(
                n,
                op,
                &format!("order is not a permutation of the {size} demos"),
            ));
        }
        let items = idx
            .iter()
            .map(|&i| demos.get_item(i))
            .collect::<PyResult<Vec<_>>>()?;
        let reordered = PyList::new(self.py, items)?;
        demos.set_slice(0, size, reordered.as_any())
    }

    fn set(
        &mut self,
        n: usize,
        op: &str,
        path: &str,
        edit: &Bound<'py, PyDict>,
        name: &str,
        kind: Option<&str>,
    ) -> PyResult<()> {
        let node = self.resolve(n, op, path)?;
        if let Some(kind) = kind {
            self.need_kind(n, op, &node, path, kind)?;
        }
        let value = self.field(n, op, edit, "value")?;
        node.set_item(key(self.py, name), copy_tree(&value, 0)?)
    }
}

const OPS: [&str; 12] = [
    "program_created",
    "module_added",
    "module_removed",
    "signature_set",
    "demo_added",
    "demo_removed",
    "demos_reordered",
    "parameter_set",
    "parameter_unset",
    "metadata_set",
    "configuration_set",
    "custom_data_set",
];

/// Apply `edits` in order to `state` and return the result: `state` itself, changed in place,
/// when `own` is None; else a copy on write (see `Applier::own`) that shares every node and
/// container the edits do not change with `state`, which stays as it was.
#[pyfunction]
#[pyo3(signature = (state, edits, own=None))]
pub(super) fn apply_edits<'py>(
    py: Python<'py>,
    state: &Bound<'py, PyAny>,
    edits: &Bound<'py, PyAny>,
    own: Option<Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let Ok(root) = state.downcast_exact::<PyDict>() else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "apply_edits() needs a dict as the state, not '{}'",
            type_name(state)?
        )));
    };
    let Ok(edits) = edits.downcast_exact::<PyList>() else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "apply_edits() needs a list of edits, not '{}'",
            type_name(edits)?
        )));
    };
    let mut applier = Applier {
        py,
        root: root.clone(),
        cache: HashMap::new(),
        own,
    };
    applier.root = applier
        .mine(root.as_any())?
        .downcast_into_exact::<PyDict>()?;
    for (n, edit) in edits.iter().enumerate() {
        applier.apply(n, &edit)?;
    }
    Ok(applier.root.into_any())
}
