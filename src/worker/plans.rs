//! The scheduler's own statements, each planned once per worker and kept for
//! its life, so that the hot path parses and plans nothing of its own.
//! Postgres re-plans a kept plan by itself when the tables change.
//!
//! They are prepared as generic plans. Left to choose, the plan cache plans
//! a statement afresh on every execution when a plan for the parameters at
//! hand looks cheaper than the generic one, as it always does for the
//! record statement, whose parameters are arrays of one element or a few:
//! that planning cost more than the statement.

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::memcxt::PgMemoryContexts;
use pgrx::pg_sys::{self, PgBuiltInOids};
use pgrx::spi::{SpiClient, SpiError, SpiResult};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::marker::PhantomData;

thread_local! {
    static PLANS: RefCell<HashMap<&'static str, pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
}

/// Runs `sql`, whose parameters have `types`, through its kept plan, and
/// returns the rows it returned (at most `limit`, if given). The client
/// stands for the SPI connection the rows live in.
pub fn execute<'conn>(
    _client: &mut SpiClient<'conn>,
    sql: &'static str,
    types: &[PgBuiltInOids],
    limit: Option<i64>,
    args: &[DatumWithOid],
) -> SpiResult<Vec<Row<'conn>>> {
    let plan = PLANS.with_borrow_mut(|plans| -> SpiResult<pg_sys::SPIPlanPtr> {
        if let Some(plan) = plans.get(sql) {
            return Ok(*plan);
        }
        let text = CString::new(sql).expect("the scheduler's SQL has no zero byte");
        let plan = keep(&text, types, pg_sys::CURSOR_OPT_GENERIC_PLAN)
            .ok_or(SpiError::PreparedStatementArgumentMismatch { expected: types.len(), got: args.len() })?;
        plans.insert(sql, plan);
        Ok(plan)
    })?;
    run(plan, args, limit)?;
    unsafe {
        let table = pg_sys::SPI_tuptable;
        if table.is_null() {
            return Ok(Vec::new());
        }
        Ok((0..pg_sys::SPI_processed as usize).map(|i| Row::new((*table).tupdesc, *(*table).vals.add(i))).collect())
    }
}

/// A row a kept plan returned, its columns taken out all at once.
/// pgrx's `SpiHeapTupleData` takes each by `heap_getattr`, which, past the
/// first NULL or variable-length column, walks the row from its start: a
/// claim's row of thirty-odd columns cost the square of that, 2.6% of a
/// burst's worker time in `nocachegetattr` alone.
pub struct Row<'conn> {
    /// SPI's descriptor of the rows, which says each column's type.
    tupdesc: pg_sys::TupleDesc,
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    /// The values and the descriptor live in the SPI connection's memory.
    _in: PhantomData<&'conn ()>,
}

impl Row<'_> {
    unsafe fn new(tupdesc: pg_sys::TupleDesc, tuple: pg_sys::HeapTuple) -> Self {
        unsafe {
            let natts = (*tupdesc).natts as usize;
            let mut values = vec![pg_sys::Datum::from(0usize); natts];
            let mut nulls = vec![false; natts];
            pg_sys::heap_deform_tuple(tuple, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
            Row { tupdesc, values, nulls, _in: PhantomData }
        }
    }

    /// Column `ordinal` (from 1), as pgrx's `SpiHeapTupleData::get` gives it:
    /// copied out of the SPI connection's memory, and refused if its type
    /// is not `T`'s.
    pub fn get<T: IntoDatum + FromDatum>(&self, ordinal: usize) -> SpiResult<Option<T>> {
        // Past the end, or 0, as pgrx refuses it.
        let at = ordinal.wrapping_sub(1);
        let (Some(&datum), Some(&null)) = (self.values.get(at), self.nulls.get(at)) else {
            return Err(SpiError::SpiError(pgrx::spi::SpiErrorCodes::NoAttribute));
        };
        if null {
            return Ok(None);
        }
        unsafe {
            let oid = pg_sys::SPI_gettypeid(self.tupdesc, ordinal as i32);
            let outside = PgMemoryContexts::CurrentMemoryContext.parent().expect("SPI runs in a child context");
            T::try_from_datum_in_memory_context(outside, datum, false, oid).map_err(SpiError::DatumError)
        }
    }
}

/// Runs `sql` as `execute` does, but planned (at its first run, and again
/// whenever its tables change) with no sequential or bitmap scan or sort
/// allowed: for a walk that must follow an index in its order and stop at
/// its limit, or a lookup of a few keys, whatever the statistics say. A path switched off costs ten billion
/// until PostgreSQL 18, enough to have JIT compile it (0.3 s) on every
/// run, so JIT is off too. The settings last only the statement; an ERROR
/// in it undoes them with its transaction.
pub fn execute_in_index_order<'conn>(
    client: &mut SpiClient<'conn>,
    sql: &'static str,
    types: &[PgBuiltInOids],
    limit: Option<i64>,
    args: &[DatumWithOid],
) -> SpiResult<Vec<Row<'conn>>> {
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        for setting in [c"enable_seqscan", c"enable_bitmapscan", c"enable_sort", c"jit"] {
            pg_sys::set_config_option(
                setting.as_ptr(),
                c"off".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                pg_sys::PGERROR as i32,
                false,
            );
        }
        let rows = execute(client, sql, types, limit, args);
        pg_sys::AtEOXact_GUC(true, level);
        rows
    }
}

/// `sql` planned and kept for the backend's life (until `SPI_freeplan`);
/// None if SPI would not keep it. An ERROR in it is raised.
pub fn keep(sql: &std::ffi::CStr, types: &[PgBuiltInOids], options: u32) -> Option<pg_sys::SPIPlanPtr> {
    let mut oids: Vec<pg_sys::Oid> = types.iter().map(|t| pg_sys::Oid::from(*t as u32)).collect();
    let plan =
        unsafe { pg_sys::SPI_prepare_cursor(sql.as_ptr(), oids.len() as i32, oids.as_mut_ptr(), options as i32) };
    (!plan.is_null() && unsafe { pg_sys::SPI_keepplan(plan) } == 0).then_some(plan)
}

/// Runs a kept plan; its rows, if any, are in SPI_tuptable, and how many it
/// processed in SPI_processed.
pub fn run(plan: pg_sys::SPIPlanPtr, args: &[DatumWithOid], limit: Option<i64>) -> SpiResult<()> {
    let (mut values, mut nulls): (Vec<pg_sys::Datum>, Vec<std::ffi::c_char>) = args
        .iter()
        .map(|a| match a.datum() {
            Some(d) => (d.sans_lifetime(), b' ' as std::ffi::c_char),
            None => (pg_sys::Datum::from(0usize), b'n' as std::ffi::c_char),
        })
        .unzip();
    unsafe {
        pg_sys::SPI_tuptable = std::ptr::null_mut();
        let status = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_mut_ptr(), false, limit.unwrap_or(0));
        if status < 0 {
            return Err(SpiError::SpiError(
                pgrx::spi::SpiErrorCodes::try_from(status).unwrap_or(pgrx::spi::SpiErrorCodes::Unconnected),
            ));
        }
    }
    Ok(())
}

/// The first column of the first row, if there is one.
pub fn first<T: FromDatum + IntoDatum>(rows: &[Row]) -> SpiResult<Option<T>> {
    match rows.first() {
        Some(row) => row.get(1),
        None => Ok(None),
    }
}
