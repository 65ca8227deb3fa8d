-- Purpose: the schemas (layers) of the warehouse. Applied once by the migration runner.
CREATE SCHEMA stg;
CREATE SCHEMA dim;
CREATE SCHEMA analytics;
CREATE SCHEMA ops;
CREATE SCHEMA agg;
