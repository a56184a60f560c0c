-- The retention sweep finds what is due by time, whatever order the rows came in.
CREATE INDEX prediction_log_by_time ON prediction_log (deployment, time_ms);
CREATE INDEX deployment_labels_by_time ON deployment_labels (deployment, time_ms);
