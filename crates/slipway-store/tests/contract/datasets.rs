//! Run inputs (datasets, models) and outputs.

use slipway_core::tracking::{Dataset, DatasetInput, ModelOutput};

use crate::common::{Store, create_experiment, create_run, dataset_input, tag};

contract!(dataset_inputs_sqlite, dataset_inputs_postgres => case_dataset_inputs);
contract!(model_inputs_outputs_sqlite, model_inputs_outputs_postgres => case_model_inputs_outputs);

async fn case_dataset_inputs(store: &Store) {
    let experiment = create_experiment(store, "datasets").await;
    let run_id = create_run(store, experiment, "d", 1).await;
    let full = DatasetInput {
        tags: vec![tag("mlflow.data.context", "training"), tag("extra", "yes")],
        dataset: Dataset {
            name: "mnist".into(),
            digest: "abc123".into(),
            source_type: "http".into(),
            source: "{\"url\": \"https://example.com/mnist.csv\"}".into(),
            schema: Some("{\"mlflow_colspec\": [{\"type\": \"double\", \"name\": \"x\"}]}".into()),
            profile: Some("{\"num_rows\": 10}".into()),
        },
    };
    // Same name, another digest: a different dataset.
    let second = dataset_input("mnist", "def456", None);
    store
        .log_inputs(&run_id, vec![full.clone(), second.clone()], Vec::new())
        .await
        .unwrap();
    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(
        run.inputs.dataset_inputs,
        vec![full.clone(), second.clone()]
    );

    // Logging the same (name, digest) again, even with other tags, adds nothing.
    let mut retagged = full.clone();
    retagged.tags = vec![tag("mlflow.data.context", "eval")];
    store
        .log_inputs(&run_id, vec![full.clone()], Vec::new())
        .await
        .unwrap();
    store
        .log_inputs(&run_id, vec![second.clone(), retagged], Vec::new())
        .await
        .unwrap();
    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(
        run.inputs.dataset_inputs,
        vec![full.clone(), second.clone()]
    );

    // A new one is appended after the existing ones.
    let third = dataset_input("cifar", "0001", Some("eval"));
    store
        .log_inputs(&run_id, vec![third.clone()], Vec::new())
        .await
        .unwrap();
    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(
        run.inputs.dataset_inputs,
        vec![full.clone(), second.clone(), third.clone()]
    );

    // Another run of the experiment can log the same dataset, with its own input tags.
    let other = create_run(store, experiment, "e", 2).await;
    let shared = DatasetInput {
        tags: vec![tag("mlflow.data.context", "eval")],
        dataset: full.dataset.clone(),
    };
    store
        .log_inputs(&other, vec![shared.clone()], Vec::new())
        .await
        .unwrap();
    assert_eq!(
        store.get_run(&other).await.unwrap().inputs.dataset_inputs,
        vec![shared]
    );
    assert_eq!(
        store.get_run(&run_id).await.unwrap().inputs.dataset_inputs,
        vec![full, second, third]
    );

    // And a run of another experiment too.
    let elsewhere = create_experiment(store, "datasets-elsewhere").await;
    let far = create_run(store, elsewhere, "f", 3).await;
    let input = dataset_input("mnist", "abc123", None);
    store
        .log_inputs(&far, vec![input.clone()], Vec::new())
        .await
        .unwrap();
    assert_eq!(
        store.get_run(&far).await.unwrap().inputs.dataset_inputs,
        vec![input]
    );
}

async fn case_model_inputs_outputs(store: &Store) {
    let experiment = create_experiment(store, "model-io").await;
    let run_id = create_run(store, experiment, "m", 1).await;
    store
        .log_inputs(&run_id, Vec::new(), vec!["m-bbb".into(), "m-aaa".into()])
        .await
        .unwrap();
    // Idempotent.
    store
        .log_inputs(&run_id, Vec::new(), vec!["m-aaa".into()])
        .await
        .unwrap();
    let run = store.get_run(&run_id).await.unwrap();
    let mut inputs = run.inputs.model_inputs.clone();
    inputs.sort();
    assert_eq!(inputs, vec!["m-aaa".to_owned(), "m-bbb".to_owned()]);
    assert!(run.inputs.dataset_inputs.is_empty());

    store
        .log_outputs(
            &run_id,
            vec![ModelOutput {
                model_id: "m-out".into(),
                step: 5,
            }],
        )
        .await
        .unwrap();
    store
        .log_outputs(
            &run_id,
            vec![ModelOutput {
                model_id: "m-out".into(),
                step: 5,
            }],
        )
        .await
        .unwrap();
    let run = store.get_run(&run_id).await.unwrap();
    assert_eq!(
        run.outputs,
        vec![ModelOutput {
            model_id: "m-out".into(),
            step: 5
        }]
    );
    // Inputs and outputs are per run.
    let other = create_run(store, experiment, "n", 2).await;
    let other = store.get_run(&other).await.unwrap();
    assert!(other.inputs.model_inputs.is_empty());
    assert!(other.outputs.is_empty());
}
