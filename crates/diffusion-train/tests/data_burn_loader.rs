//! The dataset and batcher plug into burn 0.21's own `DataLoaderBuilder`.

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use diffusion_train::data::{DataConfig, ImageBatch};

type B = burn::backend::Flex;

#[test]
fn burn_dataloader_yields_padded_sample_batches() {
    let config = DataConfig::new().with_pad_to(Some(32));
    let dataset = config.load_dataset().unwrap();
    let total = dataset.len();
    let batcher = config.batcher(&dataset, 7);
    let loader = DataLoaderBuilder::<B, _, ImageBatch<B>>::new(batcher)
        .batch_size(64)
        .shuffle(1)
        .num_workers(2)
        .build(dataset);
    assert_eq!(loader.num_items(), total);
    let mut seen = 0;
    for batch in loader.iter().take(3) {
        assert_eq!(batch.images.dims(), [64, 1, 32, 32]);
        assert_eq!(batch.labels.dims(), [64]);
        let values: Vec<f32> = batch.images.into_data().to_vec().unwrap();
        assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
        assert!(
            values.iter().any(|&v| v > 0.5),
            "digits have bright strokes"
        );
        let labels = batch
            .labels
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        assert!(labels.iter().all(|l| (0..10).contains(l)));
        seen += 1;
    }
    assert_eq!(seen, 3);
}
