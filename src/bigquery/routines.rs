//! Routines (user-defined functions, procedures, table functions): listed, read, created — over
//! REST JSON, so that their resources keep BigQuery's own representation (the typed model writes
//! enums such as `argumentKind` as numbers) in the manifest and back.

use reqwest::Method;
use serde_json::Value;

use super::client::BigQuery;
use super::resource::RoutineResource;
use crate::domain::DatasetRef;
use crate::error::{Error, ErrorKind};

fn routines_path(dataset: &DatasetRef) -> String {
    format!(
        "projects/{}/datasets/{}/routines",
        dataset.project, dataset.dataset
    )
}

impl BigQuery {
    /// Every routine of a dataset with its full definition, as BigQuery's JSON. `routines.list`
    /// leaves out bodies and arguments on BigQuery, so each routine is read with `routines.get`.
    pub async fn list_routines(&self, dataset: &DatasetRef) -> Result<Vec<RoutineResource>, Error> {
        let base = routines_path(dataset);
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let path = match &token {
                Some(t) => format!(
                    "{base}?pageToken={}",
                    url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
                ),
                None => base.clone(),
            };
            let page = self.rest(Method::GET, &path, None).await?;
            for routine in page["routines"].as_array().into_iter().flatten() {
                if let Some(id) = routine["routineReference"]["routineId"].as_str() {
                    ids.push(id.to_string());
                }
            }
            match page["nextPageToken"].as_str().filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        let mut routines = Vec::with_capacity(ids.len());
        for id in ids {
            let answer = self
                .rest(Method::GET, &format!("{base}/{id}"), None)
                .await?;
            let odd = |e| {
                Error::upstream(format!(
                    "routines.get({dataset}.{id}) answered a routine whose {e}"
                ))
            };
            let routine = RoutineResource::from_json(answer).map_err(odd)?;
            // Every routine kept names itself: callers read its id without a fallback.
            routine.routine_id().map_err(odd)?;
            routines.push(routine);
        }
        Ok(routines)
    }

    /// Creates a routine; `Ok(false)` when one with that name exists already.
    pub async fn create_routine(
        &self,
        dataset: &DatasetRef,
        routine: &Value,
    ) -> Result<bool, Error> {
        match self
            .rest(Method::POST, &routines_path(dataset), Some(routine))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::Conflict => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a routine; one that is already gone is not an error.
    pub async fn delete_routine(
        &self,
        dataset: &DatasetRef,
        routine_id: &str,
    ) -> Result<(), Error> {
        match self
            .rest(
                Method::DELETE,
                &format!("{}/{routine_id}", routines_path(dataset)),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}
